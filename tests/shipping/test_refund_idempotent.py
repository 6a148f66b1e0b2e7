"""A refund job whose record was lost after the carrier took the refund (its transaction
failed once the call had succeeded) runs again and records the carrier's refund: the label
ends refund_pending or refunded, never error, and the carrier is asked exactly once."""

from __future__ import annotations

from sqlalchemy import select, text

from refit.models import OrderStatus
from refit.models.shipping import PurchaseStatus, SandboxObject
from refit.orders.service import transition
from refit.shipping import state
from tests.shipping.helpers import buy, make_due, purchases, quote

REFUND_RECORDS = (PurchaseStatus.REFUND_PENDING, PurchaseStatus.REFUNDED)


async def _refund_jobs(resources, order_id):
    async with resources.sessionmaker() as session:
        return (
            await session.execute(
                text(
                    "SELECT status, attempts FROM procrastinate_jobs "
                    "WHERE task_name = 'shipping.refund_label' "
                    "AND args ->> 'order_id' = :order_id ORDER BY id"
                ),
                {"order_id": str(order_id)},
            )
        ).all()


def _lose_the_refund_record(monkeypatch) -> list[str]:
    """Our bookkeeping after the carrier call fails once, as a lost commit would: the carrier
    holds the refund, our row does not. Returns the transactions whose record was lost."""
    original = state.update_purchase
    lost: list[str] = []

    async def failing(session, **kwargs):
        if kwargs.get("status") in REFUND_RECORDS and not lost:
            lost.append(kwargs["transaction_id"])
            raise ConnectionResetError("the commit never reached PostgreSQL")
        return await original(session, **kwargs)

    monkeypatch.setattr(state, "update_purchase", failing)
    return lost


async def _cancel_with_a_lost_refund_record(
    client, seller, order, resources, run_jobs, monkeypatch
):
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    await run_jobs()
    [row] = await purchases(resources, order.id)
    assert row.status == PurchaseStatus.SUCCEEDED

    lost = _lose_the_refund_record(monkeypatch)
    async with resources.sessionmaker() as session, session.begin():
        await transition(session, order.id, OrderStatus.CANCELLED, actor=f"user:{seller.id}")
    await run_jobs()
    assert lost == [row.transaction_id]
    [job] = await _refund_jobs(resources, order.id)
    assert (job.status, job.attempts) == ("todo", 1)  # failed once, retried later
    [row] = await purchases(resources, order.id)
    assert row.status == PurchaseStatus.SUCCEEDED  # the record of the refund was lost

    monkeypatch.undo()
    await make_due(resources)
    await run_jobs()
    assert [j.status for j in await _refund_jobs(resources, order.id)] == ["succeeded"]
    [row] = await purchases(resources, order.id)
    return row


async def test_shippo_refund_retried_after_a_lost_commit_is_recorded_not_asked_again(
    client, make_user, make_order, resources, run_jobs, shippo_settings, shippo_server, monkeypatch
):
    seller = await make_user()
    order = await make_order(seller)
    row = await _cancel_with_a_lost_refund_record(
        client, seller, order, resources, run_jobs, monkeypatch
    )

    [bought] = shippo_server.labels_bought()
    assert len(shippo_server.calls("POST", "/refunds")) == 1
    [refund] = shippo_server.state.refunds
    assert refund["transaction"] == bought["object_id"]
    assert (row.status, row.transaction_id) == ("refund_pending", bought["object_id"])
    assert (row.refund_id, row.refund_status) == (refund["object_id"], "QUEUED")


async def test_sandbox_refund_retried_after_a_lost_commit_is_recorded_not_asked_again(
    client, make_user, make_order, resources, run_jobs, monkeypatch
):
    seller = await make_user()
    order = await make_order(seller)
    row = await _cancel_with_a_lost_refund_record(
        client, seller, order, resources, run_jobs, monkeypatch
    )

    async with resources.sessionmaker() as session:
        refunds = list(
            await session.scalars(
                select(SandboxObject).where(
                    SandboxObject.kind == "refund",
                    SandboxObject.data["transaction"].astext == row.transaction_id,
                )
            )
        )
    [refund] = refunds  # asked once
    assert (row.status, row.refund_id, row.refund_status) == (
        "refunded",
        refund.object_id,
        "SUCCESS",
    )


async def test_find_refund_reads_the_carrier_list(shippo, shippo_server):
    """Shippo's GET /refunds has paging only: the refund of one label is found among others."""
    other = shippo_server.add_label("rate_other", "order:someone-else")
    mine = shippo_server.add_label("rate_mine", "order:mine")
    assert await shippo.find_refund(mine) is None
    asked = await shippo.refund_label(mine)
    await shippo.refund_label(other)
    found = await shippo.find_refund(mine)
    assert found == asked
    assert len(shippo_server.calls("POST", "/refunds")) == 2
