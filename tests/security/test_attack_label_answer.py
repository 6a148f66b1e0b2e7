"""Attacks on d9b9c1b: a carrier's SUCCESS is committed with the stored label, or alone when
the label cannot be stored (labels._complete), and a crash in between leaves a 'started' row
for rule 4's search. Invariants: a label bought at most once per order, never lost, a
cancelled order's label always refunded, no order left stuck. The last two found a fault
older than d9b9c1b (a retry refused beside a waiting job of its queueing lock left the order
stuck), fixed by migration 0031."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import text

from refit import queue
from refit.models import OrderStatus
from refit.orders.service import transition
from refit.settings import DEV_WEBHOOK_TOKEN
from refit.shipping import labels, webhook_tasks
from refit.shipping.tasks import sweep_labels
from tests.admin.helpers import operator_headers
from tests.shipping import conftest as shipping
from tests.shipping.helpers import (
    buy,
    label_jobs,
    make_due,
    order_row,
    purchases,
    quote,
    time_passes,
)

WEBHOOK_URL = f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}"
# The shipping tests' fixtures: the local Shippo server, settings pointing at it, orders.
make_order, shippo_server = shipping.make_order, shipping.shippo_server
shippo_settings = shipping.shippo_settings


async def _bought_order(client, make_user, make_order):
    """A seller's order with its label asked for (the label job queued, not run)."""
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    return seller, order, rate_id


async def _cancel(resources, order_id, seller) -> None:
    async with resources.sessionmaker() as session, session.begin():
        await transition(session, order_id, OrderStatus.CANCELLED, actor=f"user:{seller.id}")


def _block_storage(settings, order_id):
    """The label's directory is a file: storing the label fails (OSError, an Exception),
    whoever runs the worker, root included."""
    blocker = settings.labels_dir / "labels" / str(order_id)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"")
    return blocker


async def _while_downloading(shippo_server, run_jobs, during):
    """Run the label job in this process with its label download held at the carrier; run
    `during()` while it is held; then let the download answer and the job end."""
    shippo_server.hold_next_label_download()
    worker = asyncio.create_task(run_jobs())
    try:
        assert await asyncio.to_thread(shippo_server.wait_until_holding, 30)
        await during()
    finally:
        shippo_server.release()
    return await asyncio.gather(worker, return_exceptions=True)


async def _jobs(resources, order_id):
    return [(j.id, j.status, j.attempts) for j in await label_jobs(resources, order_id)]


async def test_cancelled_while_the_label_downloads_is_refunded(
    client, make_user, make_order, resources, run_jobs, shippo_settings, shippo_server
):
    """The order is cancelled while the bought label downloads (its answer not committed
    yet): the label is recorded with the refund, and refunded once; nothing bought again."""
    seller, order, _ = await _bought_order(client, make_user, make_order)

    async def cancel():
        [row] = await purchases(resources, order.id)
        assert (row.status, row.transaction_id) == ("started", None)
        assert await sweep_labels(grace_seconds=0) == 0  # its job is running: not stuck
        await _cancel(resources, order.id, seller)

    assert await _while_downloading(shippo_server, run_jobs, cancel) == [None]
    await run_jobs()  # the refund job, held back by the label lock until now
    [bought] = shippo_server.labels_bought()
    assert len(shippo_server.calls("POST", "/transactions")) == 1
    assert [r["transaction"] for r in shippo_server.state.refunds] == [bought["object_id"]]
    [row] = await purchases(resources, order.id)
    assert (row.status, row.transaction_id) == ("refund_pending", bought["object_id"])
    assert (await order_row(resources, order.id)).status == OrderStatus.CANCELLED


async def test_cancelled_after_a_failed_download_is_refunded_not_bought_again(
    client, make_user, make_order, resources, run_jobs, shippo_settings, shippo_server
):
    """The download fails (the answer committed alone), then the order is cancelled: the
    label job's retry buys nothing, the refund job refunds the one label."""
    seller, order, _ = await _bought_order(client, make_user, make_order)
    shippo_server.fail_next_label_downloads(1)
    await run_jobs()
    [bought] = shippo_server.labels_bought()
    assert (await order_row(resources, order.id)).label_transaction_id == bought["object_id"]

    await _cancel(resources, order.id, seller)
    await make_due(resources)
    await run_jobs()
    assert len(shippo_server.calls("POST", "/transactions")) == 1
    assert [r["transaction"] for r in shippo_server.state.refunds] == [bought["object_id"]]
    [row] = await purchases(resources, order.id)
    assert (row.status, row.transaction_id) == ("refund_pending", bought["object_id"])
    assert [status for _, status, _ in await _jobs(resources, order.id)] == ["succeeded"]


@pytest.mark.parametrize("cancelled", [False, True], ids=["kept", "cancelled"])
async def test_the_fallback_failing_loses_no_label(
    client,
    make_user,
    make_order,
    resources,
    run_jobs,
    settings,
    shippo_settings,
    shippo_server,
    monkeypatch,
    cancelled,
):
    """The download fails and so does the fallback's commit of the answer (the database
    went away): the attempt stays 'started'. The retry (or, for an order cancelled since, the
    refund job) must find the label at the carrier: one label, stored or refunded."""
    seller, order, _ = await _bought_order(client, make_user, make_order)
    shippo_server.fail_next_label_downloads(1)

    def lost(self):
        raise ConnectionError("the database went away before the answer was committed")

    with monkeypatch.context() as patch:
        patch.setattr(labels.Answer, "alone", lost)
        await run_jobs()
    [bought] = shippo_server.labels_bought()
    [row] = await purchases(resources, order.id)
    assert (row.status, row.transaction_id) == ("started", None)
    assert (await order_row(resources, order.id)).label_transaction_id is None

    if cancelled:
        await _cancel(resources, order.id, seller)
    await time_passes(resources, order.id, 60)
    await make_due(resources)
    await run_jobs()

    assert len(shippo_server.calls("POST", "/transactions")) == 1
    stored = await order_row(resources, order.id)
    [row] = await purchases(resources, order.id)
    if cancelled:
        assert stored.status == OrderStatus.CANCELLED
        assert [r["transaction"] for r in shippo_server.state.refunds] == [bought["object_id"]]
        assert (row.status, row.transaction_id) == ("refund_pending", bought["object_id"])
    else:
        assert stored.status == OrderStatus.AWAITING_SHIPMENT and stored.label_file_key
        assert stored.label_transaction_id == bought["object_id"]
        assert (row.status, row.transaction_id) == ("succeeded", bought["object_id"])
        assert shippo_server.state.refunds == []


@pytest.mark.timeout(120)
async def test_a_worker_shutdown_during_the_download_buys_nothing_twice(
    client, make_user, make_order, resources, run_jobs, settings, shippo_settings, shippo_server
):
    """The worker is stopped while the label downloads and its minute of grace runs out: the
    job is cancelled (asyncio.CancelledError, a BaseException). The answer is committed
    alone all the same, so the retry starts from the transaction: no search, one label."""
    _, order, _ = await _bought_order(client, make_user, make_order)
    shippo_server.hold_next_label_download()
    worker = queue.build_worker(wait=True, install_signal_handlers=False)
    worker.shutdown_graceful_timeout = 0  # as if the minute of grace had passed
    running = asyncio.create_task(worker.run())
    try:
        assert await asyncio.to_thread(shippo_server.wait_until_holding, 30)
        worker.stop()
        await asyncio.wait_for(running, 30)
    finally:
        shippo_server.release()
    [bought] = shippo_server.labels_bought()
    [(_, status, attempts)] = await _jobs(resources, order.id)
    assert (status, attempts) == ("todo", 1)  # aborted by the shutdown, to be retried
    [row] = await purchases(resources, order.id)
    assert (row.status, row.transaction_id) == ("succeeded", bought["object_id"])

    await make_due(resources)
    await run_jobs()
    assert len(shippo_server.calls("POST", "/transactions")) == 1
    assert shippo_server.state.list_queries == []
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.AWAITING_SHIPMENT and stored.label_file_key
    assert stored.label_transaction_id == bought["object_id"]
    assert [(p.status, p.transaction_id) for p in await purchases(resources, order.id)] == [
        ("succeeded", bought["object_id"])
    ]


async def _second_job_then_a_failed_store(
    client, make_user, make_order, resources, run_jobs, settings, shippo_server, second_job
):
    """While the label downloads (answer not committed), `second_job()` queues another label
    job for the order; then storing the label fails. Afterwards, with the storage back, the
    order must reach awaiting_shipment with its one label and no label job left 'doing'."""
    _, order, rate_id = await _bought_order(client, make_user, make_order)
    blocker = _block_storage(settings, order.id)

    async def during():
        await second_job(order, rate_id)
        assert [status for _, status, _ in await _jobs(resources, order.id)] == ["doing", "todo"]

    outcome = await _while_downloading(shippo_server, run_jobs, during)
    blocker.unlink()
    [bought] = shippo_server.labels_bought()
    # The answer was committed alone (the fallback); the order waits on that transaction.
    assert (await order_row(resources, order.id)).label_transaction_id == bought["object_id"]

    # What the periodic task does for jobs whose worker is gone, then every due job.
    try:
        stalled = await queue.retry_stalled_jobs(queue.queue)
    except Exception as exc:  # reported below
        stalled = repr(exc)
    await make_due(resources)
    await run_jobs()
    stored = await order_row(resources, order.id)
    seen = {
        "worker": outcome,
        "stalled retry": stalled,
        "jobs": await _jobs(resources, order.id),
        "sweep": await sweep_labels(grace_seconds=0),
    }
    assert stored.status == OrderStatus.AWAITING_SHIPMENT, seen
    assert stored.label_file_key and stored.label_transaction_id == bought["object_id"]
    assert len(shippo_server.calls("POST", "/transactions")) == 1
    assert "doing" not in [status for _, status, _ in seen["jobs"]], seen


@pytest.mark.timeout(120)
async def test_a_transaction_webhook_during_the_download_leaves_nothing_stuck(
    client, make_user, make_order, resources, run_jobs, settings, shippo_settings, shippo_server
):
    """Shippo's transaction_updated (SUCCESS) arrives before our commit: the order is named
    by its metadata and its label job made due (a second job, the first is running)."""

    async def webhook(order, rate_id):
        [txn] = shippo_server.transactions_created()
        body = {
            "event": "transaction_updated",
            "test": True,
            "data": {
                "object_id": txn["object_id"],
                "status": "SUCCESS",
                "object_updated": dt.datetime.now(dt.UTC).isoformat(),
                "metadata": f"order:{order.id}",
                "rate": rate_id,
                "tracking_number": txn["tracking_number"],
                "messages": [],
            },
        }
        assert (await client.post(WEBHOOK_URL, json=body)).json() == {"status": "accepted"}
        async with resources.sessionmaker() as session:
            inbox_id = await session.scalar(text("SELECT id FROM webhook_inbox"))
        # What the webhook's own job does (shipping.handle_webhook), here for determinism.
        assert await webhook_tasks.handle(inbox_id) == "label job due now"

    await _second_job_then_a_failed_store(
        client, make_user, make_order, resources, run_jobs, settings, shippo_server, webhook
    )


@pytest.mark.timeout(120)
async def test_an_operator_retry_during_the_download_leaves_nothing_stuck(
    client, make_user, make_order, resources, run_jobs, settings, shippo_settings, shippo_server
):
    """An admin's retry-label while the label downloads (the order is processing_shipment,
    so it is accepted): a second job queued beside the running one."""
    headers = await operator_headers(resources)

    async def retry(order, rate_id):
        retried = await client.post(f"/api/admin/orders/{order.id}/retry-label", headers=headers)
        assert retried.status_code == 202 and retried.json()["job_id"] is not None

    await _second_job_then_a_failed_store(
        client, make_user, make_order, resources, run_jobs, settings, shippo_server, retry
    )
