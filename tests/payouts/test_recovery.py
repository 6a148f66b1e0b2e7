"""The ways out of a stopped payout, through the API against the local ledger: a failed one
retried by an admin pair pays once; cancelled, its device goes home or it is paid again; an
"already on chain" hold resolved with the transfer found (another amount or recipient
refused)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from solana.rpc.models import TxOpts
from solders.pubkey import Pubkey
from sqlalchemy import text

from refit.payouts import chain
from tests.inspection.helpers import operator
from tests.ledger.conftest import funded, wait_for_status
from tests.payouts.conftest import (
    as_quoted_order,
    balance,
    order_row,
    pay,
    payout_row,
    transfers_for,
)
from tests.payouts.test_lost_payout_row import _as_if_restored_from_before_the_payout

LAMPORTS = 2_946_600_000  # $442 at $150


def _url(payout_id, verb: str) -> str:
    return f"/api/admin/payouts/{payout_id}/{verb}"


async def _events(resources, payout_id) -> list[tuple[str | None, str, str]]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT from_status, to_status, actor FROM payout_events "
                "WHERE payout_id = :id ORDER BY at, id"
            ),
            {"id": payout_id},
        )
        return [tuple(r) for r in rows.all()]


async def _landed_with_an_error(resources, paying, order_id: str, wallet) -> str:
    """The payout's stored transfer is one that lands with an error (its payer cannot cover
    it, as if drained between preflight and landing): planted before the job runs, which then
    sends it, sees it land failed at finalized and marks the payout failed."""
    payout = await payout_row(resources, order_id)
    poor = await funded(paying.ledger.rpc, 10**9)  # less than the transfer
    blockhash = await chain.latest_blockhash(paying.ledger.rpc)
    tx = chain.sign_transfer(
        poor, wallet.pubkey(), LAMPORTS, Pubkey.from_string(payout.reference), blockhash.blockhash
    )
    signature = (
        await paying.ledger.rpc.send_raw_transaction(bytes(tx), TxOpts(skip_preflight=True))
    ).value
    status = await wait_for_status(paying.ledger.rpc, signature)
    assert status.err is not None
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE payouts SET status = 'sent', signed_tx = :tx, signature = :sig, "
                "last_valid_block_height = :h, lamports = :l, amount_sol = 2.9466, "
                "sol_usd_rate = 150, rate_source = 'fixed', signed_at = now(), attempts = 1 "
                "WHERE id = :id"
            ),
            {
                "tx": bytes(tx),
                "sig": str(signature),
                "h": blockhash.last_valid_block_height,
                "l": LAMPORTS,
                "id": payout.id,
            },
        )
    return str(signature)


async def test_a_failed_payout_retried_by_two_admins_pays_once(
    client, resources, make_user, run_jobs, paying, settings
):
    settings.payout_max_usd = Decimal("100")  # $442: every action on it needs two admins
    second = await operator(resources, "admin")
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    asked = await pay(client, order_id, paying.admin)
    assert asked.json()["status"] == "awaiting_approval"
    payout_id = asked.json()["id"]
    approved = await client.post(_url(payout_id, "approve"), headers=second.headers)
    assert approved.status_code == 202, approved.text
    failed_signature = await _landed_with_an_error(resources, paying, order_id, wallet)
    await run_jobs()
    failed = await payout_row(resources, order_id)
    assert failed.status == "failed" and failed.signature == failed_signature
    assert await balance(paying.ledger, wallet.pubkey()) == 0

    alone = await client.post(_url(payout_id, "retry"), headers=paying.admin.headers)
    assert alone.status_code == 403, alone.text
    assert (await payout_row(resources, order_id)).status == "failed"
    inspector = await client.post(_url(payout_id, "retry"), headers=paying.inspector.headers)
    assert inspector.status_code == 403
    retried = await client.post(
        _url(payout_id, "retry"), headers={**second.headers, "Idempotency-Key": "retry-1"}
    )
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "pending"
    replayed = await client.post(
        _url(payout_id, "retry"), headers={**second.headers, "Idempotency-Key": "retry-1"}
    )
    assert replayed.status_code == 202 and replayed.headers["Idempotent-Replayed"] == "true"
    await run_jobs()

    paid = await payout_row(resources, order_id)
    assert paid.status == "finalized" and paid.signature != failed_signature
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    on_chain = await transfers_for(paying.ledger, paid.reference)
    assert sorted(on_chain) == sorted([failed_signature, paid.signature])
    assert (await order_row(resources, order_id)).status == "completed"
    again = await client.post(_url(payout_id, "retry"), headers=second.headers)
    assert again.status_code == 409 and again.json()["code"] == "invalid_payout_transition"
    events = await _events(resources, uuid.UUID(payout_id))
    assert ("awaiting_approval", "pending", second.actor) in events
    assert ("sent", "failed", "system:payouts") in events
    assert ("failed", "pending", second.actor) in events
    assert ("sent", "finalized", "system:payouts") in events


async def test_a_cancelled_payout_lets_the_device_go_home(
    client, resources, make_user, run_jobs, paying
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    payout_id = (await pay(client, order_id, paying.admin)).json()["id"]
    await _landed_with_an_error(resources, paying, order_id, wallet)
    await run_jobs()
    home = f"/api/admin/orders/{order_id}/return-label"
    refused = await client.post(home, headers=paying.admin.headers)
    assert refused.status_code == 409 and refused.json()["code"] == "payout_requested"

    cancelled = await client.post(_url(payout_id, "cancel"), headers=paying.admin.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert (await order_row(resources, order_id)).status == "inspecting"
    sent_home = await client.post(home, headers=paying.admin.headers)
    assert sent_home.status_code == 202, sent_home.text
    assert (await order_row(resources, order_id)).status == "returning"
    events = await _events(resources, uuid.UUID(payout_id))
    assert ("failed", "cancelled", paying.admin.actor) in events


async def test_a_cancelled_payout_paid_again_reopens_with_its_reference(
    client, resources, make_user, run_jobs, paying
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    payout_id = (await pay(client, order_id, paying.admin)).json()["id"]
    await _landed_with_an_error(resources, paying, order_id, wallet)
    await run_jobs()
    reference = (await payout_row(resources, order_id)).reference
    assert (await client.post(_url(payout_id, "cancel"), headers=paying.admin.headers)).is_success

    again = await pay(client, order_id, paying.admin, **{"Idempotency-Key": "pay-again"})
    assert again.status_code == 202, again.text
    assert again.json()["id"] == payout_id and again.json()["status"] == "pending"
    await run_jobs()
    paid = await payout_row(resources, order_id)
    assert paid.status == "finalized" and paid.reference == reference
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    events = await _events(resources, uuid.UUID(payout_id))
    assert ("cancelled", "pending", paying.admin.actor) in events


async def test_an_already_on_chain_hold_is_resolved_with_the_transfer_found(
    client, resources, make_user, run_jobs, paying
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()
    first = await payout_row(resources, order_id)
    await _as_if_restored_from_before_the_payout(resources, order_id)
    # Two more transfers from the treasury carrying the order's reference: to someone else,
    # and half the amount to the seller.
    rpc = paying.ledger.rpc
    reference = Pubkey.from_string(first.reference)
    planted = {}
    for name, to, lamports in (
        ("elsewhere", (await funded(rpc, 10**9)).pubkey(), LAMPORTS),
        ("half", wallet.pubkey(), LAMPORTS // 2),
    ):
        blockhash = await chain.latest_blockhash(rpc)
        tx = chain.sign_transfer(paying.treasury, to, lamports, reference, blockhash.blockhash)
        sent = (await rpc.send_raw_transaction(bytes(tx))).value
        await wait_for_status(rpc, sent)
        planted[name] = str(sent)
    payout_id = (await pay(client, order_id, paying.admin)).json()["id"]
    await run_jobs()
    held = await payout_row(resources, order_id)
    assert held.status == "held" and held.hold_reason == "already_on_chain"

    for name, code in (("elsewhere", "transfer_mismatch"), ("half", "transfer_mismatch")):
        refused = await client.post(
            _url(payout_id, "resolve"),
            json={"signature": planted[name]},
            headers=paying.admin.headers,
        )
        assert refused.status_code == 422, (name, refused.text)
        assert refused.json()["code"] == code
        assert (await payout_row(resources, order_id)).status == "held"
    not_held = await client.post(_url(payout_id, "retry"), headers=paying.admin.headers)
    assert not_held.status_code == 409

    resolved = await client.post(
        _url(payout_id, "resolve"),
        json={"signature": first.signature},
        headers=paying.admin.headers,
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "finalized"
    assert resolved.json()["signature"] == first.signature
    order = await order_row(resources, order_id)
    assert order.status == "completed" and order.payment_tx_signature == first.signature
    events = await _events(resources, uuid.UUID(payout_id))
    assert ("held", "finalized", paying.admin.actor) in events
