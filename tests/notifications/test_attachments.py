"""Files an email's context names are read from storage by the send job and travel with the
message, over SMTP and in the outbox folder; a file that is not there fails the job, which is
retried and sends nothing until it is."""

from __future__ import annotations

import email
import email.policy
import uuid

from sqlalchemy import text

from refit.notifications.service import queue_email
from refit.storage import label_storage
from tests.notifications.smtp_server import smtp_server

KEY = "labels/0b6c1a52-7d43-4c2e-9d0e-5a1f3e2b8c71/txn_1.pdf"
LABEL = b"%PDF-1.4\n\x00\xff binary label bytes\n%%EOF\n"
CONTEXT = {
    "order_number": "ORD-2026-000042",
    "device": "Apple iPhone 13",
    "quoted_price_usd": "120.00",
    "tracking_number": "9400TEST",
    "attachments": [
        {
            "storage_key": KEY,
            "filename": "refit-label-ORD-2026-000042.pdf",
            "content_type": "application/pdf",
        }
    ],
}


async def _queue(resources) -> uuid.UUID:
    async with resources.sessionmaker() as session, session.begin():
        return await queue_email(
            session, to="seller@example.com", template="order_label_ready", context=CONTEXT
        )


async def _rows(resources, sql, **params):
    async with resources.sessionmaker() as session:
        return (await session.execute(text(sql), params)).all()


def _the_label(message: email.message.EmailMessage) -> bytes:
    [part] = list(message.iter_attachments())
    assert part.get_filename() == "refit-label-ORD-2026-000042.pdf"
    assert part.get_content_type() == "application/pdf"
    content = part.get_content()
    assert isinstance(content, bytes)
    # The text and HTML stay the message's body, beside the file.
    assert message.get_content_type() == "multipart/mixed"
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None and "It is attached to this email" in plain.get_content()
    return content


async def test_the_outbox_keeps_the_whole_message_with_its_file(resources, settings, run_jobs):
    assert settings.smtp_url is None
    await label_storage(settings).put(KEY, LABEL, "application/pdf")
    email_id = await _queue(resources)
    await run_jobs()
    [path] = list(settings.outbox_dir.iterdir())
    assert path.name.endswith(f"-{email_id}.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert _the_label(message) == LABEL


async def test_a_missing_file_fails_the_job_until_it_is_there(resources, settings, run_jobs):
    async with smtp_server() as smtp:
        settings.smtp_url = smtp.url
        email_id = await _queue(resources)
        await run_jobs()
        assert smtp.messages == []
        [job] = await _rows(
            resources,
            "SELECT id, status, attempts FROM procrastinate_jobs "
            "WHERE task_name = 'notifications.send_email'",
        )
        assert (job.status, job.attempts) == ("todo", 1)  # retried, with backoff
        [error] = await _rows(
            resources, "SELECT error_type, message FROM job_errors WHERE job_id = :id", id=job.id
        )
        assert (error.error_type, error.message) == ("LabelNotFound", KEY)
        [row] = await _rows(
            resources, "SELECT sent_at, failed_at FROM outbound_emails WHERE id = :id", id=email_id
        )
        assert row.sent_at is None and row.failed_at is None

        # The file turns up (an operator restores it): the next attempt sends it, once.
        await label_storage(settings).put(KEY, LABEL, "application/pdf")
        async with resources.sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE id = :id"),
                {"id": job.id},
            )
        await run_jobs()
    [received] = smtp.messages
    assert _the_label(received.message) == LABEL
    [job] = await _rows(
        resources,
        "SELECT status FROM procrastinate_jobs WHERE task_name = 'notifications.send_email'",
    )
    assert job.status == "succeeded"
