"""A label purchase whose reply was lost is found, refunded or waited for, never bought twice:
on a busy Shippo account, when the order is cancelled seconds after the timeout, and when the
order goes back to pending while the purchase is still in flight."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import text

from refit.models import OrderStatus
from refit.orders.service import transition
from tests.shipping.helpers import (
    buy,
    label_jobs,
    make_due,
    order_row,
    purchases,
    quote,
    time_passes,
)


async def _refund_jobs(resources, order_id):
    async with resources.sessionmaker() as session:
        return (
            await session.execute(
                text(
                    "SELECT status, attempts, scheduled_at - now() AS due_in "
                    "FROM procrastinate_jobs WHERE task_name = 'shipping.refund_label' "
                    "AND args ->> 'order_id' = :order_id ORDER BY id"
                ),
                {"order_id": str(order_id)},
            )
        ).all()


async def test_a_lost_purchase_is_found_on_a_busy_account(
    client, make_user, make_order, resources, run_jobs, settings, shippo_settings, shippo_server
):
    """The reply is lost, then 150 other labels are bought on the account (Shippo lists newest
    first, 100 a page, and has no rate filter): the next attempt still finds ours on page 2
    and adopts it instead of buying a second label."""
    settings.shippo_timeout_seconds = 1
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    shippo_server.add_transactions(80, age_seconds=6 * 3600)  # long before: outside the search
    shippo_server.hold_next_transaction()
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    await run_jobs()
    shippo_server.release()
    [row] = await purchases(resources, order.id)
    assert (row.status, row.transaction_id) == ("started", None)
    shippo_server.add_transactions(150)

    await make_due(resources)
    await run_jobs()

    assert len(shippo_server.calls("POST", "/transactions")) == 1
    [bought] = shippo_server.labels_bought()
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.AWAITING_SHIPMENT
    assert stored.label_transaction_id == bought["object_id"]
    [row] = await purchases(resources, order.id)
    assert (row.status, row.transaction_id) == ("succeeded", bought["object_id"])
    # It listed the window around the attempt, page by page, without the old labels.
    queries = shippo_server.state.list_queries
    assert [q["page"] for q in queries] == ["1", "2"]
    assert all("rate" not in q and "object_created_gt" in q for q in queries)


async def test_the_refund_job_waits_for_an_unanswered_purchase_to_settle(
    client, make_user, make_order, resources, run_jobs, settings, shippo_settings, shippo_server
):
    """The purchase times out, the seller cancels, and the refund job runs at once, before the
    carrier has created the label: it must not conclude "nothing was bought" then. Once twice
    our timeout has passed it finds the label that appeared meanwhile and refunds it."""
    settings.shippo_timeout_seconds = 1
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    shippo_server.hold_next_transaction(create_first=False)
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    await run_jobs()
    assert shippo_server.wait_until_holding(5)
    async with resources.sessionmaker() as session, session.begin():
        await transition(session, order.id, OrderStatus.CANCELLED, actor=f"user:{seller.id}")
    settings.shippo_timeout_seconds = 30  # the attempt is now well inside its 60 s window

    # The purchase job's retry (same lock, so it runs first) sees the cancellation; then the
    # refund job runs, seconds after the timeout.
    await make_due(resources)
    await run_jobs()
    [purchase_job] = await label_jobs(resources, order.id)
    assert purchase_job.status == "succeeded"
    await run_jobs()  # the refund job was held back by the lock while that one ran
    [refund_job] = await _refund_jobs(resources, order.id)
    assert (refund_job.status, refund_job.attempts) == ("todo", 1)
    assert dt.timedelta(seconds=30) < refund_job.due_in <= dt.timedelta(seconds=62)
    [row] = await purchases(resources, order.id)
    assert (row.status, row.transaction_id) == ("started", None)
    assert shippo_server.state.refunds == []

    # The carrier creates the label late; then the window passes.
    shippo_server.release()
    for _ in range(100):
        if shippo_server.labels_bought():
            break
        await asyncio.sleep(0.05)
    [bought] = shippo_server.labels_bought()
    await time_passes(resources, order.id, 120)
    await make_due(resources)
    await run_jobs()

    assert [r["transaction"] for r in shippo_server.state.refunds] == [bought["object_id"]]
    [row] = await purchases(resources, order.id)
    assert (row.status, row.transaction_id) == ("refund_pending", bought["object_id"])
    assert [j.status for j in await _refund_jobs(resources, order.id)] == ["succeeded"]
    assert len(shippo_server.calls("POST", "/transactions")) == 1  # nothing bought again


async def test_a_new_rate_is_refused_while_an_earlier_purchase_is_in_flight(
    client, make_user, make_order, resources, run_jobs, settings, shippo_settings, shippo_server
):
    """processing_shipment -> pending while the first purchase never answered: buying with
    another rate now could end in two paid labels, so it is refused and changes nothing."""
    settings.shippo_timeout_seconds = 1
    seller = await make_user()
    order = await make_order(seller)
    first, second = [r["rate_id"] for r in (await quote(client, seller, order.id))[:2]]
    shippo_server.hold_next_transaction()
    assert (await buy(client, seller, order.id, first)).status_code == 202
    await run_jobs()
    shippo_server.release()
    [row] = await purchases(resources, order.id)
    assert row.status == "started"
    async with resources.sessionmaker() as session, session.begin():
        await transition(session, order.id, OrderStatus.PENDING, actor="operator:test")

    refused = await buy(client, seller, order.id, second)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "label_purchase_in_flight"
    assert "still being resolved" in refused.json()["detail"]
    stored = await order_row(resources, order.id)
    assert (stored.status, stored.shipping_rate_id) == (OrderStatus.PENDING, first)
    [job] = await label_jobs(resources, order.id)  # only the first purchase's job
    assert job.status == "todo"

    # The first purchase's retry sees the order pending and buys nothing more.
    await make_due(resources)
    await run_jobs()
    assert len(shippo_server.calls("POST", "/transactions")) == 1
    assert (await order_row(resources, order.id)).status == OrderStatus.PENDING
