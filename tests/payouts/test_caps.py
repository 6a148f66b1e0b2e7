"""Treasury caps: a payout over the per-payout cap waits for a second admin; the daily cap
holds when two payout jobs sign at once."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from refit.payouts import tasks
from tests.inspection.helpers import operator
from tests.payouts.conftest import (
    as_quoted_order,
    balance,
    count,
    pay,
    payout_row,
    transfers_for,
)

LAMPORTS = 2_946_600_000  # $442 at $150


async def _send_jobs(resources) -> int:
    return await count(
        resources,
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'payouts.send_payout'",
    )


async def test_a_payout_over_the_cap_waits_for_another_admin(
    client, resources, make_user, run_jobs, paying, settings
):
    settings.payout_max_usd = Decimal("400")
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    # Made before the payout is asked for: an admin made after cannot approve it (four-eyes).
    second = await operator(resources, "admin")

    asked = await pay(client, order_id, paying.admin)
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "awaiting_approval"
    payout_id = asked.json()["id"]
    assert await _send_jobs(resources) == 0
    await run_jobs()
    assert (await payout_row(resources, order_id)).signed_tx is None

    approve = f"/api/admin/payouts/{payout_id}/approve"
    same = await client.post(approve, headers=paying.admin.headers)
    assert same.status_code == 403, same.text
    assert same.json()["code"] == "four_eyes_refused"
    inspector = await client.post(approve, headers=paying.inspector.headers)
    assert inspector.status_code == 403
    missing = await client.post(
        f"/api/admin/payouts/{uuid.uuid4()}/approve", headers=paying.admin.headers
    )
    assert missing.status_code == 404
    assert await _send_jobs(resources) == 0
    assert (await payout_row(resources, order_id)).status == "awaiting_approval"

    approved = await client.post(approve, headers=second.headers)
    assert approved.status_code == 202, approved.text
    assert approved.json()["status"] == "pending"
    assert approved.json()["approved_by"] == second.actor
    again = await client.post(approve, headers=second.headers)
    assert again.status_code == 202
    assert await _send_jobs(resources) == 1

    await run_jobs()
    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS


async def test_the_daily_cap_holds_with_two_jobs_signing_at_once(
    client, resources, make_user, paying, settings
):
    settings.payout_daily_max_usd = Decimal("500")  # one $442 payout fits, two do not
    orders = [(await as_quoted_order(client, resources, make_user, paying))[0] for _ in range(2)]
    for order_id in orders:
        assert (await pay(client, order_id, paying.admin)).status_code == 202

    results = await asyncio.gather(
        *(tasks.send_payout(uuid.UUID(order_id)) for order_id in orders),
        return_exceptions=True,
    )

    capped = [r for r in results if isinstance(r, tasks.DailyCapReached)]
    assert len(capped) == 1, results
    assert results.count("finalized") == 1, results
    rows = [await payout_row(resources, order_id) for order_id in orders]
    signed = [p for p in rows if p.signed_tx is not None]
    waiting = [p for p in rows if p.signed_tx is None]
    assert len(signed) == 1 and len(waiting) == 1
    assert signed[0].status == "finalized"
    assert waiting[0].status == "pending" and waiting[0].error == "daily cap reached"
    assert await transfers_for(paying.ledger, waiting[0].reference) == []

    # Still capped on the retry: it waits, never signs.
    again = await asyncio.gather(tasks.send_payout(waiting[0].order_id), return_exceptions=True)
    assert isinstance(again[0], tasks.DailyCapReached)
    assert (await payout_row(resources, str(waiting[0].order_id))).signed_tx is None
