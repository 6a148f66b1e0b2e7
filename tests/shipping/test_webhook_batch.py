"""Webhooks settled together (refit/shipping/webhook_batch.py): the rows that need no carrier
are settled beside another row's job, with the outcome their own job would have written, and
their jobs end as the worker ends a job; a parcel of ours, or a label still being recorded, is
left to its own job, which does what it always did."""

from __future__ import annotations

from sqlalchemy import select, text, update

from refit.models import Order, OrderStatus
from refit.models.shipping import WebhookInbox
from refit.shipping.webhooks import HANDLE_TASK
from tests.shipping.helpers import order_row
from tests.shipping.test_webhooks import URL, shipped_order, track_updated  # noqa: F401


async def _post(client, body: dict) -> None:
    response = await client.post(URL, json=body)
    assert response.json() == {"status": "accepted"}


async def test_waiting_rows_are_settled_beside_one_job_and_ours_are_left_to_theirs(
    client,
    resources,
    run_jobs,
    shipped_order,  # noqa: F811
    make_user,
    make_order,
):
    order, number = await shipped_order("TRANSIT")
    labelling = await make_order(await make_user())
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == labelling.id)
            .values(status=OrderStatus.PROCESSING_SHIPMENT)
        )
    unknown = [f"9400UNKNOWN{i:04d}" for i in range(12)]
    for n in unknown:
        await _post(client, track_updated(n, "TRANSIT"))
    await _post(client, track_updated(number, "TRANSIT"))
    await _post(client, {"event": "batch_created", "test": True, "data": {"object_id": "b_1"}})
    # A label being recorded: its own job waits for the number (and is retried).
    waiting = track_updated("9400LABELLING", "TRANSIT", metadata=f"order:{labelling.id}")
    await _post(client, waiting)

    await run_jobs()

    async with resources.sessionmaker() as session:
        rows = {
            (r.body["data"].get("tracking_number") or r.event): r
            for r in (await session.scalars(select(WebhookInbox))).all()
        }
        jobs = (
            await session.execute(
                text(
                    "SELECT j.status, j.attempts, array_agg(e.type::text ORDER BY e.id) "
                    "FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id "
                    "WHERE j.task_name = :task GROUP BY j.id"
                ),
                {"task": HANDLE_TASK},
            )
        ).all()
        together = await session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_events s JOIN procrastinate_events e "
                "USING (job_id) WHERE s.type = 'started' AND e.type = 'succeeded' "
                "AND s.at = e.at"
            )
        )
    for n in unknown:
        assert rows[n].processed_at is not None and rows[n].order_id is None
        assert rows[n].outcome == f"no order has tracking number {n}"
    assert rows["batch_created"].outcome == "ignored: batch_created events are not used"
    # Ours: followed with the carrier by its own job, as before.
    assert rows[number].order_id == order.id and rows[number].outcome.startswith("2 new event")
    assert (await order_row(resources, order.id)).status is OrderStatus.SHIPPED
    # The label being recorded: not settled, its job retried.
    assert rows["9400LABELLING"].processed_at is None
    statuses = sorted(status for status, _, _ in jobs)
    assert statuses == ["succeeded"] * (len(unknown) + 2) + ["todo"]
    for status, attempts, events in jobs:
        if status == "succeeded":
            # Each as the worker ends a job: taken, then succeeded; one attempt counted.
            assert events == ["deferred", "started", "succeeded"] and attempts == 1
    assert together >= 1  # some settled beside another's job, in its transaction


async def test_a_row_settled_already_is_nothing_to_do(client, resources, run_jobs):
    await _post(client, track_updated("9400ONCE", "TRANSIT"))
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(WebhookInbox).values(processed_at=text("now()"), outcome="by hand")
        )
    await run_jobs()
    async with resources.sessionmaker() as session:
        [row] = (await session.scalars(select(WebhookInbox))).all()
        status = await session.scalar(
            text("SELECT status::text FROM procrastinate_jobs WHERE task_name = :t"),
            {"t": HANDLE_TASK},
        )
    assert row.outcome == "by hand" and status == "succeeded"
