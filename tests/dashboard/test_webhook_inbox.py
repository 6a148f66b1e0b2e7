"""A webhook whose handling keeps failing is retried up to REFIT_WEBHOOK_MAX_ATTEMPTS, then
given up on (the sweep re-queues it no more), shown in the dashboard's inbox as needing
attention with its last error, and replayed from there."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from sqlalchemy import select, text, update

from refit.models import OperatorAudit, Order, OrderStatus
from refit.models.shipping import WebhookInbox
from refit.settings import DEV_WEBHOOK_TOKEN
from refit.shipping import webhook_tasks
from refit.shipping.webhooks import HANDLE_TASK
from tests.dashboard.helpers import signed_in_operator

URL = f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}"


def _track_updated(number: str, order_id: uuid.UUID) -> dict:
    """A track update naming an order (metadata) whose label is still being recorded."""
    status = {"object_id": f"ts_{number}", "status": "TRANSIT", "status_date": None}
    return {
        "event": "track_updated",
        "test": True,
        "data": {
            "carrier": "usps",
            "tracking_number": number,
            "metadata": f"order:{order_id}",
            "tracking_status": status,
            "tracking_history": [status],
        },
    }


async def _row(resources, inbox_id: uuid.UUID) -> WebhookInbox:
    async with resources.sessionmaker() as session:
        row = await session.get(WebhookInbox, inbox_id)
        assert row is not None
        return row


async def _todo_jobs(resources) -> int:
    async with resources.sessionmaker() as session:
        found = await session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task "
                "AND status = 'todo'"
            ),
            {"task": HANDLE_TASK},
        )
        return int(found or 0)


async def _run_retries_now(resources, run_jobs) -> None:
    """The job's next retry made due (its wait has passed), then the worker runs it."""
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() "
                "WHERE task_name = :task AND status = 'todo'"
            ),
            {"task": HANDLE_TASK},
        )
    await run_jobs()


def _section(html: str, kind: str) -> str:
    found = re.search(rf'<table id="webhooks-{kind}".*?</table>', html, re.S)
    assert found, kind
    return found.group(0)


async def test_a_failing_webhook_is_given_up_shown_and_replayed(
    client, resources, settings, make_user, run_jobs
):
    settings.webhook_max_attempts = 3
    seller = await make_user()
    async with resources.sessionmaker() as session, session.begin():
        order = Order(
            user_id=seller.id,
            status=OrderStatus.PROCESSING_SHIPMENT,
            device_brand="Apple",
            device_model="iPhone 13",
            device_condition="good",
            quoted_price_usd=Decimal("412.50"),
            quoted_price_sol=Decimal("2.7500"),
        )
        session.add(order)
    number = f"9400{uuid.uuid4().int % 10**18:018d}"
    response = await client.post(URL, json=_track_updated(number, order.id))
    assert response.json() == {"status": "accepted"}
    async with resources.sessionmaker() as session:
        inbox_id = (await session.scalars(select(WebhookInbox.id))).one()

    await run_jobs()
    first = await _row(resources, inbox_id)
    assert first.attempts == 1 and first.error is None and first.processed_at is None
    assert "LabelNotRecordedYet" in (first.last_error or "")
    admin, csrf = await signed_in_operator(resources, client, "admin")
    inbox = await client.get("/admin/webhooks")
    assert inbox.status_code == 200
    assert str(inbox_id) in _section(inbox.text, "failing")
    assert "LabelNotRecordedYet" in _section(inbox.text, "failing")

    # Retried up to the limit, then given up on: no job left, and the sweep re-queues nothing.
    await _run_retries_now(resources, run_jobs)
    await _run_retries_now(resources, run_jobs)
    given_up = await _row(resources, inbox_id)
    assert given_up.attempts == 3 and given_up.processed_at is None
    assert given_up.error and "failed 3 times" in given_up.error
    assert await _todo_jobs(resources) == 0
    assert await webhook_tasks.sweep_webhooks(after_seconds=0) == 0
    await _run_retries_now(resources, run_jobs)
    assert (await _row(resources, inbox_id)).attempts == 3

    inbox = await client.get("/admin/webhooks")
    attention = _section(inbox.text, "attention")
    assert str(inbox_id) in attention and "failed 3 times" in attention
    assert str(inbox_id) not in _section(inbox.text, "failing")

    # The label is recorded meanwhile (here: the order no longer waits on one); replay.
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order).where(Order.id == order.id).values(status=OrderStatus.CANCELLED)
        )
    replayed = await client.post(f"/admin/webhooks/{inbox_id}/replay", data={"csrf": csrf})
    assert replayed.status_code == 303
    assert "queued again" in (await client.get(replayed.headers["location"])).text
    reset = await _row(resources, inbox_id)
    assert (reset.attempts, reset.error, reset.last_error) == (0, None, None)
    assert await _todo_jobs(resources) == 1
    async with resources.sessionmaker() as session:
        [audited] = (
            await session.scalars(
                select(OperatorAudit).where(OperatorAudit.action == "webhook.replay")
            )
        ).all()
    assert audited.actor == f"operator:{admin.id}" and audited.subject == f"webhook:{inbox_id}"
    assert audited.detail["attempts"] == 3

    await run_jobs()
    handled = await _row(resources, inbox_id)
    assert handled.processed_at is not None and handled.outcome.startswith("no order has")
    # Handled: nothing left to replay.
    again = await client.post(f"/admin/webhooks/{inbox_id}/replay", data={"csrf": csrf})
    assert again.status_code == 409 and "handled already" in again.text


async def test_an_unreadable_body_needs_attention_and_cannot_be_replayed(client, resources):
    await client.post(URL, content=b"{not json", headers={"Content-Type": "application/json"})
    async with resources.sessionmaker() as session:
        inbox_id = (await session.scalars(select(WebhookInbox.id))).one()
    _, csrf = await signed_in_operator(resources, client, "admin")
    inbox = await client.get("/admin/webhooks")
    attention = _section(inbox.text, "attention")
    assert str(inbox_id) in attention and "not replayable" in attention
    refused = await client.post(f"/admin/webhooks/{inbox_id}/replay", data={"csrf": csrf})
    assert refused.status_code == 409 and "could not be read" in refused.text


async def test_an_inspector_may_neither_see_nor_replay_the_inbox(client, resources):
    await client.post(URL, content=b"{not json", headers={"Content-Type": "application/json"})
    async with resources.sessionmaker() as session:
        inbox_id = (await session.scalars(select(WebhookInbox.id))).one()
    _, csrf = await signed_in_operator(resources, client, "inspector")
    assert (await client.get("/admin/webhooks")).status_code == 403
    refused = await client.post(f"/admin/webhooks/{inbox_id}/replay", data={"csrf": csrf})
    assert refused.status_code == 403
    async with resources.sessionmaker() as session:
        replays = select(OperatorAudit.id).where(OperatorAudit.action == "webhook.replay")
        assert await session.scalar(replays) is None
