"""Sanctions screening before signing: a recipient on the list (a fixture in OFAC's XML shape)
holds the payout unsigned; only the four-eyes release moves it, whatever the amount."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from refit.sanctions import service as sanctions
from tests.inspection.helpers import operator
from tests.payouts.conftest import as_quoted_order, balance, pay, payout_row, transfers_for
from tests.sanctions.helpers import LISTED, days_ago, sample_list

LAMPORTS = 2_946_600_000  # $442 at $150


async def test_a_listed_recipient_is_held_before_signing_until_two_admins_release(
    client, resources, make_user, run_jobs, paying
):
    second = await operator(resources, "admin")
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    async with resources.sessionmaker() as session, session.begin():
        await sanctions.replace_list(
            session, sample_list(days_ago(1), replace={LISTED: str(wallet.pubkey())})
        )
    # $442 is under the per-payout cap: one admin pays it alone.
    payout_id = (await pay(client, order_id, paying.admin)).json()["id"]
    await run_jobs()

    held = await payout_row(resources, order_id)
    assert held.status == "held" and held.hold_reason == "sanctions"
    assert held.signed_tx is None and held.signature is None
    assert await transfers_for(paying.ledger, held.reference) == []
    assert await balance(paying.ledger, wallet.pubkey()) == 0

    release = f"/api/admin/payouts/{payout_id}/release"
    alone = await client.post(release, headers=paying.admin.headers)
    assert alone.status_code == 403, alone.text
    for refused in ("retry", "resolve"):
        other = await client.post(
            f"/api/admin/payouts/{payout_id}/{refused}",
            json={"signature": "1" * 64},
            headers=second.headers,
        )
        assert other.status_code in (409, 422), other.text
    assert (await payout_row(resources, order_id)).status == "held"

    released = await client.post(release, headers=second.headers)
    assert released.status_code == 202, released.text
    await run_jobs()
    paid = await payout_row(resources, order_id)
    assert paid.status == "finalized"
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    async with resources.sessionmaker() as session:
        events = (
            await session.execute(
                text(
                    "SELECT from_status, to_status, actor, reason FROM payout_events "
                    "WHERE payout_id = :id ORDER BY at, id"
                ),
                {"id": uuid.UUID(payout_id)},
            )
        ).all()
    assert ("pending", "held", "system:payouts", "sanctions") in events
    assert ("held", "pending", second.actor, "released from sanctions") in events


async def test_a_stale_lists_release_decides_nothing_about_a_hit_on_the_list_loaded_since(
    client, resources, make_user, run_jobs, paying
):
    """Held while the list was stale (production), then today's list names the recipient: the
    asker alone cannot release it (four-eyes for every sanctions hold, whatever the amount),
    and two admins' release of the stale hold does not let the hit through: held again, for
    the hit, unpaid (the red team's: one admin paid a listed address this way)."""
    second = await operator(resources, "admin")
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    async with resources.sessionmaker() as session, session.begin():
        await sanctions.replace_list(
            session, sample_list(days_ago(1), replace={LISTED: str(wallet.pubkey())})
        )
    payout_id = (await pay(client, order_id, paying.admin)).json()["id"]
    await run_jobs()
    assert (await payout_row(resources, order_id)).hold_reason == "sanctions"
    # As a production payout held for a stale list before today's was loaded.
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE payouts SET hold_reason = 'sanctions_list_stale' WHERE id = :id"),
            {"id": payout_id},
        )
    release = f"/api/admin/payouts/{payout_id}/release"
    alone = await client.post(release, headers=paying.admin.headers)
    assert alone.status_code == 403 and alone.json()["code"] == "four_eyes_refused"
    assert (await client.post(release, headers=second.headers)).status_code == 202
    await run_jobs()
    held = await payout_row(resources, order_id)
    assert (held.status, held.hold_reason) == ("held", "sanctions")
    assert await balance(paying.ledger, wallet.pubkey()) == 0
