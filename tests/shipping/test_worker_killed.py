"""Done-when 4: the worker process is SIGKILLed in the middle of a purchase and restarted:
exactly one label is bought and the order reaches awaiting_shipment."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import text

from refit import queue
from refit.models import OrderStatus
from tests.shipping.helpers import buy, label_jobs, order_row, purchases, quote

ROOT = Path(__file__).resolve().parents[2]


def _start_worker(settings) -> subprocess.Popen:
    env = {
        **os.environ,
        "REFIT_ENV": "test",
        "REFIT_DATABASE_URL": settings.database_url,
        "REFIT_REDIS_URL": settings.redis_url,
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_DATA_DIR": str(settings.data_dir),
        "REFIT_PUBLIC_URL": settings.public_url,
        "REFIT_SHIPPO_API_KEY": settings.shippo_api_key,
        "REFIT_SHIPPO_BASE_URL": settings.shippo_base_url,
        "REFIT_SHIPPO_TIMEOUT_SECONDS": str(settings.shippo_timeout_seconds),
        "REFIT_WORKER_HEARTBEAT_SECONDS": str(settings.worker_heartbeat_seconds),
        "REFIT_WORKER_STALLED_AFTER_SECONDS": str(settings.worker_stalled_after_seconds),
    }
    return subprocess.Popen([sys.executable, "-m", "refit", "worker"], cwd=ROOT, env=env)


async def _wait_for(predicate, timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out waiting")


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def _kill_then_recover(resources, settings, worker, order_id):
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    [job] = await label_jobs(resources, order_id)
    assert job.status == "doing"  # the dead worker's job, until its heartbeat goes stale
    # With any periodic job the worker had started when it died.
    async with resources.sessionmaker() as session:
        running = await session.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'")
        )
    # Time passes in SQL: the dead worker's last heartbeat is now older than the bound.
    async with resources.sessionmaker() as session, session.begin():
        aged = await session.execute(
            text(
                "UPDATE procrastinate_workers "
                "SET last_heartbeat = last_heartbeat - make_interval(secs => :s)"
            ),
            {"s": settings.worker_stalled_after_seconds + 1},
        )
        assert aged.rowcount >= 1
    # What the periodic queue.retry_stalled_jobs task does every minute, run now.
    assert await queue.retry_stalled_jobs(queue.queue) == running
    [job] = await label_jobs(resources, order_id)
    assert job.status == "todo"
    restarted = _start_worker(settings)
    try:

        async def reached():
            return (await order_row(resources, order_id)).status == OrderStatus.AWAITING_SHIPMENT

        await _wait_for(reached)
    finally:
        _stop(restarted)


async def _label_text(client, seller, order_id) -> str:
    label = await client.get(f"/api/shipping/labels/{order_id}", headers=seller.headers)
    assert label.status_code == 200
    return PdfReader(io.BytesIO(label.content)).pages[0].extract_text()


# Where the worker dies before our commit of the carrier's answer: waiting for the purchase's
# reply (the worst window: the carrier created the transaction), or downloading the label of
# a SUCCESS (its answer goes in with the stored label).
HELD = {
    "purchase reply": lambda server: server.hold_next_transaction(),
    "label download": lambda server: server.hold_next_label_download(),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("held", HELD)
async def test_killed_before_the_carrier_answer_was_recorded(
    client, make_user, make_order, resources, settings, shippo_settings, shippo_server, held
):
    """The restarted job finds the transaction by rate and metadata, and buys nothing."""
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    HELD[held](shippo_server)
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202

    worker = _start_worker(settings)
    try:
        assert await asyncio.to_thread(shippo_server.wait_until_holding, 30)
        # The purchase is on record as started; its transaction id is not (the crash window).
        [row] = await purchases(resources, order.id)
        assert (row.status, row.transaction_id) == ("started", None)
        assert (await order_row(resources, order.id)).label_transaction_id is None
        await _kill_then_recover(resources, settings, worker, order.id)
    finally:
        shippo_server.release()
        _stop(worker)

    [bought] = shippo_server.labels_bought()
    assert len(shippo_server.calls("POST", "/transactions")) == 1
    assert shippo_server.state.list_queries  # the lookup by rate
    stored = await order_row(resources, order.id)
    assert stored.label_transaction_id == bought["object_id"]
    assert stored.tracking_number == bought["tracking_number"]
    assert [(p.status, p.transaction_id) for p in await purchases(resources, order.id)] == [
        ("succeeded", bought["object_id"])
    ]
    [job] = await label_jobs(resources, order.id)
    assert job.status == "succeeded"
    assert bought["tracking_number"] in await _label_text(client, seller, order.id)


@pytest.mark.timeout(120)
async def test_killed_while_waiting_on_a_queued_transaction(
    client, make_user, make_order, resources, settings, shippo_settings, shippo_server
):
    """The transaction id was committed before waiting: the restarted job waits on the same
    transaction instead of buying again."""
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    shippo_server.queue_next_transactions(1, polls=1_000_000)
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202

    worker = _start_worker(settings)
    try:

        async def recorded():
            return (await order_row(resources, order.id)).label_transaction_id is not None

        await _wait_for(recorded)
        [created] = shippo_server.transactions_created()
        assert created["status"] == "QUEUED"
        await _wait_for(lambda: _polled(shippo_server, created["object_id"]))
        shippo_server.settle_queued()  # the carrier finishes while no worker is alive
        await _kill_then_recover(resources, settings, worker, order.id)
    finally:
        _stop(worker)

    [bought] = shippo_server.labels_bought()
    assert bought["object_id"] == created["object_id"]
    assert len(shippo_server.calls("POST", "/transactions")) == 1
    stored = await order_row(resources, order.id)
    assert stored.label_transaction_id == created["object_id"]
    assert bought["tracking_number"] in await _label_text(client, seller, order.id)


async def _polled(server, transaction_id) -> bool:
    return bool(server.calls("GET", f"/transactions/{transaction_id}"))
