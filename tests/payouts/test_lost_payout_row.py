"""A database restored from a backup older than a payout has lost the payout row, and the
order is back in `inspecting`: paying it again must not pay twice. The order's reference
key is derived from its id, so the job finds the transfer on chain before it signs."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from refit.payouts import chain, service
from tests.payouts.conftest import (
    as_quoted_order,
    balance,
    pay,
    payout_row,
    transfers_for,
)

LAMPORTS = 2_946_600_000  # $442 at $150


async def _as_if_restored_from_before_the_payout(resources, order_id: str) -> None:
    """What an older backup holds: the order inspected, no payout (nor its events), no payment
    recorded."""
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "DELETE FROM payout_events WHERE payout_id IN "
                "(SELECT id FROM payouts WHERE order_id = :id)"
            ),
            {"id": order_id},
        )
        await session.execute(text("DELETE FROM payouts WHERE order_id = :id"), {"id": order_id})
        await session.execute(
            text("DELETE FROM order_status_history WHERE order_id = :id AND status = 'completed'"),
            {"id": order_id},
        )
        await session.execute(
            text(
                "UPDATE orders SET status = 'inspecting', payment_tx_signature = NULL, "
                "final_price_sol = NULL WHERE id = :id"
            ),
            {"id": order_id},
        )


async def test_a_payout_lost_by_a_restore_is_not_paid_twice(
    client, resources, make_user, run_jobs, paying
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()
    first = await payout_row(resources, order_id)
    assert first.status == "finalized"
    assert first.reference == str(chain.order_reference(uuid.UUID(order_id)))

    await _as_if_restored_from_before_the_payout(resources, order_id)
    again = await pay(client, order_id, paying.admin, **{"Idempotency-Key": "after-restore"})
    assert again.status_code == 202, again.text
    await run_jobs()

    waiting = await payout_row(resources, order_id)
    assert waiting.reference == first.reference
    assert waiting.status == "held" and waiting.signed_tx is None
    assert waiting.hold_reason == "already_on_chain"
    assert waiting.error == f"{service.ALREADY_ON_CHAIN}: {first.signature}"
    assert await transfers_for(paying.ledger, first.reference) == [first.signature]
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    # The job ended there (no crash, no retry piling up); an operator resolves or cancels it.
    jobs = "SELECT status FROM procrastinate_jobs WHERE task_name = 'payouts.send_payout'"
    async with resources.sessionmaker() as session:
        statuses = (await session.scalars(text(jobs + " ORDER BY id"))).all()
    assert statuses == ["succeeded", "succeeded"]
    # The pager's series (ops/prometheus/alerts.yml, RefitPayoutAlreadyOnChain).
    scraped = (await client.get("/metrics")).text
    assert "\nrefit_payouts_already_on_chain 1.0\n" in scraped
