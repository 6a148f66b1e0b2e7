"""What follows a move is data (refit/orders/follow_ups.py), deferred by task name: every name
must be a task the worker runs, and each move queues exactly what the table says."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from refit import queue
from refit.models import OrderStatus
from refit.orders import follow_ups
from tests.orders.helpers import operator_move, place_order

S = OrderStatus


def test_every_follow_up_names_a_registered_task():
    queue.queue.perform_import_paths()
    registered = set(queue.queue.tasks)
    assert follow_ups.TASK_NAMES, "the table is empty"
    assert follow_ups.TASK_NAMES <= registered, follow_ups.TASK_NAMES - registered


async def _jobs(resources, order_id: uuid.UUID) -> list[tuple[str, str | None, str | None]]:
    async with resources.sessionmaker() as session, session.begin():
        rows = await session.execute(
            text(
                "SELECT task_name, queueing_lock, lock FROM procrastinate_jobs "
                "WHERE args ->> 'order_id' = :id ORDER BY id"
            ),
            {"id": str(order_id)},
        )
        return [tuple(r) for r in rows.all()]


async def test_moves_queue_the_jobs_the_table_names(client, resources, make_user):
    seller = await make_user()
    bought = uuid.UUID((await place_order(client, resources, seller))["id"])
    await operator_move(resources, bought, S.PROCESSING_SHIPMENT)
    assert await _jobs(resources, bought) == [
        ("shipping.purchase_label", f"purchase-label:{bought}", f"label:{bought}")
    ]
    await operator_move(resources, bought, S.CANCELLED)
    assert (await _jobs(resources, bought))[1:] == [
        ("shipping.refund_label", f"refund-label:{bought}", f"label:{bought}")
    ]

    # Cancelled before any label: nothing to refund, so no refund job.
    unbought = uuid.UUID((await place_order(client, resources, seller))["id"])
    await operator_move(resources, unbought, S.CANCELLED)
    assert await _jobs(resources, unbought) == []


async def test_a_status_email_is_queued_by_name_with_json_context(client, resources, make_user):
    seller = await make_user(email="ada@example.com")
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    await operator_move(resources, order_id, S.CANCELLED)
    async with resources.sessionmaker() as session, session.begin():
        args = await session.scalar(
            text(
                "SELECT args FROM procrastinate_jobs WHERE task_name = :task "
                "AND args ->> 'user_id' = :user"
            ),
            {"task": follow_ups.NOTIFY_USER, "user": str(seller.id)},
        )
    assert args["template"] == "order_cancelled"
    assert args["context"]["order_id"] == str(order_id)
    assert args["context"]["status"] == "cancelled" and args["context"]["from_status"] == "pending"
    # Money travels as an exact string, never a float.
    assert isinstance(args["context"]["quoted_price_usd"], str)
