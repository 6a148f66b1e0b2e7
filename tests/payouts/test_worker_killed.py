"""Done-when 1: the real worker process is SIGKILLed (a) after the ledger took the transfer and
before the worker heard back, so nothing of the broadcast was recorded, and (b) after the
broadcast was recorded as sent and before finality; each time it is restarted: one transfer,
the seller paid once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import text

from refit import queue
from tests.payouts.conftest import (
    as_quoted_order,
    balance,
    order_row,
    pay,
    payout_row,
    transfers_for,
)
from tests.processes import start_refit, stop_refit

LAMPORTS = 2_946_600_000


def _worker(settings, paying, log_path: Path):
    env = {
        **os.environ,
        "REFIT_ENV": "test",
        "REFIT_DATABASE_URL": settings.database_url,
        "REFIT_REDIS_URL": settings.redis_url,
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_DATA_DIR": str(settings.data_dir),
        "REFIT_PUBLIC_URL": settings.public_url,
        "REFIT_SOLANA_RPC_URL": paying.ledger.server.url,
        "REFIT_TREASURY_KEYPAIR": json.dumps(list(bytes(paying.treasury))),
        "REFIT_WORKER_HEARTBEAT_SECONDS": str(settings.worker_heartbeat_seconds),
        "REFIT_WORKER_STALLED_AFTER_SECONDS": str(settings.worker_stalled_after_seconds),
    }
    return start_refit(["worker"], env, log_path)


async def _until(predicate, timeout: float = 30) -> None:
    """Poll another process's writes, often: the window before finality is about a second."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out waiting")


@pytest.mark.timeout(120)
async def test_killed_between_broadcast_and_bookkeeping(
    client, resources, settings, make_user, paying, tmp_path
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202

    worker = _worker(settings, paying, tmp_path / "worker-1.log")
    try:

        async def broadcast() -> bool:
            return (await payout_row(resources, order_id)).status == "sent"

        # Sent, and waiting for finality (32 slots): the window before the bookkeeping.
        await _until(broadcast)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    finally:
        await stop_refit(worker)

    sent = await payout_row(resources, order_id)
    assert sent.status == "sent", "the worker finished before it was killed: no crash tested"
    assert (await order_row(resources, order_id)).status == "inspecting"

    await _restart_and_expect_one_transfer(resources, settings, paying, tmp_path, sent, wallet)


@pytest.mark.timeout(120)
async def test_killed_between_broadcast_and_its_answer(
    client, resources, settings, make_user, paying, tmp_path, monkeypatch
):
    """The ledger runs in this process: its sendTransaction kills the worker right after the
    transaction landed in the ledger, before the answer goes back. The worker never learns
    that its transfer was broadcast; the payout is still `signed` in the table."""
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    worker = _worker(settings, paying, tmp_path / "worker-1.log")
    taken = paying.ledger.chain.send

    async def take_then_kill(tx, **kwargs):
        signature = await taken(tx, **kwargs)
        os.killpg(worker.pid, signal.SIGKILL)
        return signature

    monkeypatch.setattr(paying.ledger.chain, "send", take_then_kill)
    try:
        await asyncio.to_thread(worker.wait, 60)
    finally:
        await stop_refit(worker)
    monkeypatch.setattr(paying.ledger.chain, "send", taken)

    signed = await payout_row(resources, order_id)
    assert signed.status == "signed", "the kill did not land between broadcast and bookkeeping"
    assert await transfers_for(paying.ledger, signed.reference) == [signed.signature]

    await _restart_and_expect_one_transfer(resources, settings, paying, tmp_path, signed, wallet)


async def _requeue_the_dead_workers_job(resources, settings) -> None:
    """Time passes in SQL: the dead worker's heartbeat is stale; its job goes back to todo."""
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE procrastinate_workers "
                "SET last_heartbeat = last_heartbeat - make_interval(secs => :s)"
            ),
            {"s": settings.worker_stalled_after_seconds + 1},
        )
    assert await queue.retry_stalled_jobs(queue.queue) >= 1


async def _restart_and_expect_one_transfer(resources, settings, paying, tmp_path, before, wallet):
    """The dead worker's job runs again on a new worker: the order completes with the very
    transaction signed before the kill, one transfer, the seller paid once."""
    order_id = str(before.order_id)
    await _requeue_the_dead_workers_job(resources, settings)
    restarted = _worker(settings, paying, tmp_path / "worker-2.log")
    try:

        async def completed() -> bool:
            return (await order_row(resources, order_id)).status == "completed"

        await _until(completed, timeout=60)
    finally:
        await stop_refit(restarted)

    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    assert payout.signature == before.signature and payout.attempts == 1
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    assert (await order_row(resources, order_id)).payment_tx_signature == payout.signature
