"""`notifications.notify_user`, the job other domains defer by name: a verified address gets
the email once, no address gets nothing, an unknown template fails the job."""

from __future__ import annotations

import email
import email.policy

from sqlalchemy import text

from refit import queue
from refit.notifications import notify_tasks

TASK = "notifications.notify_user"

# As the orders domain sends it: JSON only, money and times already strings.
OFFER = {
    "order_id": "0b6c1a52-7d43-4c2e-9d0e-5a1f3e2b8c71",
    "order_number": "RF-1042",
    "status": "offer_pending",
    "from_status": "inspecting",
    "device": "Apple iPhone 13",
    "quoted_price_usd": "120.00",
    "final_price_usd": "95.50",
    "offer_expires_at": "2026-12-01T10:00:00.123456+00:00",
    "tracking_number": None,
}


async def _defer(resources, user_id, template="order_offer_pending", context=OFFER) -> None:
    async with resources.sessionmaker() as session, session.begin():
        await queue.defer(
            session,
            queue.queue.tasks[TASK],
            user_id=str(user_id),
            template=template,
            context=context,
        )


async def _rows(resources, sql, **params):
    async with resources.sessionmaker() as session:
        return (await session.execute(text(sql), params)).all()


async def _statuses(resources, task_name=TASK):
    rows = await _rows(
        resources,
        "SELECT status FROM procrastinate_jobs WHERE task_name = :t ORDER BY id",
        t=task_name,
    )
    return [r.status for r in rows]


def _outbox(settings):
    folder = settings.outbox_dir
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def test_the_task_is_registered_under_its_name_with_the_worker():
    assert queue.queue.tasks[TASK] is notify_tasks.notify_user
    # The worker imports only the modules listed there: without it, jobs deferred by name fail.
    assert notify_tasks.__name__ in queue.TASK_MODULES


async def test_a_verified_user_gets_one_email(resources, settings, run_jobs, make_user):
    seller = await make_user(email="ada@example.com")
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE users SET email_verified = true WHERE id = :id"), {"id": seller.id}
        )
    await _defer(resources, seller.id)
    await run_jobs()  # the notify job queues the email and its send job, in one commit
    await run_jobs()  # the send job

    [message] = _outbox(settings)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "A revised offer for your Apple iPhone 13 (order RF-1042)"
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "$120.00" in body and "$95.50" in body
    assert "before December 1, 2026 at 10:00 UTC" in body
    [logged] = await _rows(resources, "SELECT user_id, template, sent_at FROM outbound_emails")
    assert logged.user_id == seller.id and logged.template == "order_offer_pending"
    assert logged.sent_at is not None
    assert await _statuses(resources) == ["succeeded"]

    # The same job run again, as after its worker died between our commit and procrastinate
    # recording it done: it finds the email it queued and queues no second one.
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE procrastinate_jobs SET status = 'todo' WHERE task_name = :t"),
            {"t": TASK},
        )
    await run_jobs()
    await run_jobs()
    assert len(await _rows(resources, "SELECT id FROM outbound_emails")) == 1
    assert len(_outbox(settings)) == 1
    assert await _statuses(resources) == ["succeeded"]
    assert await _statuses(resources, "notifications.send_email") == ["succeeded"]


async def test_no_verified_address_no_email(resources, settings, run_jobs, make_user):
    unverified = await make_user(email="pending@example.com")
    no_address = await make_user()
    await _defer(resources, unverified.id)
    await _defer(resources, no_address.id)
    await run_jobs()
    await run_jobs()
    assert await _statuses(resources) == ["succeeded", "succeeded"]
    assert await _rows(resources, "SELECT id FROM outbound_emails") == []
    assert await _statuses(resources, "notifications.send_email") == []
    assert _outbox(settings) == []


async def test_an_unknown_template_fails_the_job(resources, run_jobs, make_user):
    # Even for a user who would not be mailed: the caller's bug shows either way.
    seller = await make_user()
    await _defer(resources, seller.id, template="order_teleported")
    for _ in range(notify_tasks.NOTIFY_RETRY.max_attempts + 1):
        await run_jobs()
        async with resources.sessionmaker() as session, session.begin():
            # Let the retry's backoff elapse now rather than wait for it.
            await session.execute(
                text("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'")
            )
    assert await _statuses(resources) == ["failed"]
    errors = await _rows(
        resources,
        "SELECT error_type, message FROM job_errors WHERE task_name = 'notifications.notify_user'",
    )
    assert len(errors) == notify_tasks.NOTIFY_RETRY.max_attempts + 1
    assert {(e.error_type, e.message) for e in errors} == {
        ("ValueError", "unknown email template 'order_teleported'")
    }
    assert await _rows(resources, "SELECT id FROM outbound_emails") == []
