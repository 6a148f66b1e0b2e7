"""Exactly-once SOL payouts on the local ledger: paid once through every failure we can
provoke (a crash after broadcast, a send that never left, a blockhash that expired)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from urllib.parse import urlencode

import httpx
from solana.rpc.async_api import AsyncClient
from solders.pubkey import Pubkey
from solders.signature import Signature
from sqlalchemy import text

from refit.payouts import chain, tasks
from tests.payouts.conftest import (
    as_quoted_order,
    balance,
    count,
    order_row,
    pay,
    payout_row,
    payouts_count,
    retry_now,
    transfers_for,
)

# $442 at the fixed test rate of $150: 2.9466 SOL (down to 0.0001).
SOL = Decimal("2.9466")
LAMPORTS = 2_946_600_000


async def _jobs(resources, status: str | None = None) -> int:
    sql = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'payouts.send_payout'"
    if status:
        sql += " AND status = :status"
    return await count(resources, sql, status=status)


async def test_an_as_quoted_order_is_paid_and_completed(
    client, resources, make_user, run_jobs, paying
):
    order_id, wallet, seller = await as_quoted_order(client, resources, make_user, paying)
    treasury_before = await balance(paying.ledger, paying.treasury.pubkey())

    response = await pay(client, order_id, paying.admin)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert body["amount_usd"] == "442.00"
    assert body["recipient"] == str(wallet.pubkey())
    assert body["treasury"] == str(paying.treasury.pubkey())
    assert body["requested_by"] == paying.admin.actor
    shown = (await client.get(f"/api/orders/{order_id}", headers=seller.headers)).json()
    assert shown["payout"] == {
        "status": "pending",
        "amount_usd": "442.00",
        "amount_sol": None,
        "lamports": None,
        "signature": None,
        "explorer_url": None,
    }

    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    assert payout.lamports == LAMPORTS and payout.amount_sol == SOL
    assert payout.sol_usd_rate == Decimal("150") and payout.rate_source == "fixed"
    assert payout.attempts == 1 and payout.finalized_at is not None
    order = await order_row(resources, order_id)
    assert order.status == "completed"
    assert order.payment_tx_signature == payout.signature
    assert order.final_price_sol == SOL
    history = await count(
        resources,
        "SELECT count(*) FROM order_status_history WHERE order_id = :o "
        "AND status = 'completed' AND actor = 'system:payouts'",
        o=order_id,
    )
    assert history == 1
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    # The treasury paid the amount and one fee.
    assert treasury_before - await balance(paying.ledger, paying.treasury.pubkey()) == (
        LAMPORTS + 5000
    )
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]
    # The seller sees what they were paid, and where to check it on chain.
    shown = (await client.get(f"/api/orders/{order_id}", headers=seller.headers)).json()
    assert shown["status"] == "completed"
    assert shown["payment_tx_signature"] == payout.signature
    assert shown["payout"] == {
        "status": "finalized",
        "amount_usd": "442.00",
        "amount_sol": "2.9466",
        "lamports": LAMPORTS,
        "signature": payout.signature,
        "explorer_url": f"https://explorer.solana.com/tx/{payout.signature}?"
        + urlencode({"cluster": "custom", "customUrl": paying.ledger.server.url}),
    }
    # Another seller's order is not found, payout or not.
    stranger = await make_user(wallet_address=str(Pubkey.new_unique()))
    hidden = await client.get(f"/api/orders/{order_id}", headers=stranger.headers)
    assert hidden.status_code == 404

    story = await client.get(f"/api/admin/orders/{order_id}", headers=paying.inspector.headers)
    assert story.json()["payout"]["signature"] == payout.signature
    # Operators see it; asking again after it is paid changes nothing.
    listed = await client.get(
        "/api/admin/payouts", params={"status": "finalized"}, headers=paying.inspector.headers
    )
    assert listed.status_code == 200
    assert [p["order_id"] for p in listed.json()["items"]] == [order_id]
    assert listed.json()["next_cursor"] is None
    again = await pay(client, order_id, paying.admin)
    assert again.status_code == 202 and again.json()["status"] == "finalized"
    await run_jobs()
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]


async def test_fifty_concurrent_requests_make_one_transfer(
    client, resources, make_user, run_jobs, paying
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)

    responses = await asyncio.gather(*(pay(client, order_id, paying.admin) for _ in range(50)))

    assert [r.status_code for r in responses] == [202] * 50
    assert len({r.json()["id"] for r in responses}) == 1
    assert await payouts_count(resources) == 1
    assert await _jobs(resources) == 1
    await run_jobs()
    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS


async def test_a_crash_between_broadcast_and_bookkeeping_pays_once(
    client, resources, make_user, run_jobs, paying, monkeypatch
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    real_landing = chain.landing
    crashed = []

    async def crash_once(rpc: AsyncClient, signature: Signature, height: int) -> chain.Landing:
        if not crashed:
            crashed.append(signature)
            raise RuntimeError("the worker died after the broadcast")
        return await real_landing(rpc, signature, height)

    monkeypatch.setattr(chain, "landing", crash_once)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert crashed and payout.status == "sent"
    assert (await order_row(resources, order_id)).status == "inspecting"
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]

    await retry_now(resources, order_id)
    await run_jobs()

    after = await payout_row(resources, order_id)
    assert after.status == "finalized"
    assert after.signature == payout.signature and after.attempts == 1
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    assert (await order_row(resources, order_id)).payment_tx_signature == payout.signature


def _drop_first_send(monkeypatch) -> list[bytes]:
    """The first broadcast never leaves the process (a connection error); later ones do."""
    dropped: list[bytes] = []
    real_send = AsyncClient.send_raw_transaction

    async def send(self, txn, opts=None):  # type: ignore[no-untyped-def]
        if not dropped:
            dropped.append(bytes(txn))
            raise httpx.ConnectError("connection refused")
        return await real_send(self, txn, opts)

    monkeypatch.setattr(AsyncClient, "send_raw_transaction", send)
    return dropped


async def test_a_send_dropped_is_retried_with_the_same_bytes(
    client, resources, make_user, run_jobs, paying, monkeypatch
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    dropped = _drop_first_send(monkeypatch)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()

    signed = await payout_row(resources, order_id)
    assert signed.status == "signed" and signed.signed_tx is not None
    assert dropped == [signed.signed_tx]
    assert await transfers_for(paying.ledger, signed.reference) == []

    await retry_now(resources, order_id)
    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    assert payout.signature == signed.signature and payout.signed_tx == signed.signed_tx
    assert payout.attempts == 1
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS


async def test_an_expired_transaction_is_signed_again_once(
    client, resources, make_user, run_jobs, paying, monkeypatch
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    _drop_first_send(monkeypatch)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()
    signed = await payout_row(resources, order_id)
    assert signed.status == "signed" and signed.last_valid_block_height is not None

    # Past the stored transaction's last valid height (and finality's 32 slots beyond).
    await paying.ledger.chain.advance(300)
    await retry_now(resources, order_id)
    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    assert payout.attempts == 2 and payout.signature != signed.signature
    assert payout.last_valid_block_height > signed.last_valid_block_height
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]
    first = await paying.ledger.rpc.get_signature_statuses(
        [Signature.from_string(signed.signature)], search_transaction_history=True
    )
    assert first.value == [None]
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS


async def test_only_an_admin_pays_and_only_an_order_ready_for_it(
    client, resources, make_user, paying
):
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)

    refused = await pay(client, order_id, paying.inspector)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert await payouts_count(resources) == 0
    assert await _jobs(resources) == 0

    # In inspection without a verdict: nothing to pay yet.
    seller = await make_user(wallet_address=str(Pubkey.new_unique()))
    from tests.inspection.helpers import inspecting_order

    waiting = await inspecting_order(client, resources, seller, paying.inspector)
    conflict = await pay(client, waiting, paying.admin)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert conflict.json()["code"] == "not_ready_to_pay"
    assert await payouts_count(resources) == 0
    assert await _jobs(resources) == 0
    assert (await order_row(resources, waiting)).status == "inspecting"


async def test_an_idempotency_key_replays_the_first_answer(client, resources, make_user, paying):
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    first = await pay(client, order_id, paying.admin, **{"Idempotency-Key": "pay-1"})
    second = await pay(client, order_id, paying.admin, **{"Idempotency-Key": "pay-1"})
    assert first.status_code == second.status_code == 202
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.json() == first.json()
    assert await payouts_count(resources) == 1


async def test_an_order_being_paid_cannot_be_sent_home(client, resources, make_user, paying):
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202

    home = await client.post(
        f"/api/admin/orders/{order_id}/return-label", headers=paying.admin.headers
    )
    assert home.status_code == 409
    assert home.json()["code"] == "payout_requested"
    assert (await order_row(resources, order_id)).status == "inspecting"


async def test_the_sweep_drives_a_payout_whose_job_was_lost(
    client, resources, make_user, run_jobs, paying
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("DELETE FROM procrastinate_jobs WHERE task_name = 'payouts.send_payout'")
        )

    assert await tasks.sweep(grace_seconds=0) == 1
    assert await tasks.sweep(grace_seconds=0) == 0  # its job is waiting: not twice
    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    assert await tasks.sweep(grace_seconds=0) == 0
