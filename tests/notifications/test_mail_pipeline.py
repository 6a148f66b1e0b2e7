"""The mail pipeline: queued in the caller's transaction, rendered and sent by a job, through
a real SMTP server or the outbox folder; retried when the server says later, never sent twice."""

from __future__ import annotations

import email
import email.policy
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text

from refit.notifications.service import notify_user, queue_email
from refit.notifications.tasks import defer_send
from refit.transactions import act_as_user
from tests.notifications.smtp_server import smtp_server


def _context(**extra):
    return {
        "email": "seller@example.com",
        "link": "http://testserver/api/auth/verify-email/confirm?token=abc",
        "token": "abc",
        "expires_hours": 24,
        **extra,
    }


async def _queue(resources, **kwargs) -> uuid.UUID:
    async with resources.sessionmaker() as session, session.begin():
        return await queue_email(
            session,
            to=kwargs.pop("to", "seller@example.com"),
            template=kwargs.pop("template", "verify_email"),
            context=kwargs.pop("context", _context()),
            **kwargs,
        )


async def _email_row(resources, email_id):
    async with resources.sessionmaker() as session:
        return (
            await session.execute(
                text("SELECT * FROM outbound_emails WHERE id = :id"), {"id": email_id}
            )
        ).one()


async def _jobs(resources):
    async with resources.sessionmaker() as session:
        return (
            await session.execute(
                text(
                    "SELECT id, status, attempts FROM procrastinate_jobs "
                    "WHERE task_name = 'notifications.send_email' ORDER BY id"
                )
            )
        ).all()


async def _run_again(resources, run_jobs, email_id):
    """What a retry of the job does: run its body again for the same email."""
    async with resources.sessionmaker() as session, session.begin():
        await defer_send(session, email_id)
    await run_jobs()


async def test_outbox_folder_when_no_smtp_url(resources, settings, run_jobs):
    assert settings.smtp_url is None
    email_id = await _queue(resources, context=_context(link="http://testserver/x?a=1&b=<2>"))
    assert not settings.outbox_dir.exists()  # nothing before the job runs

    await run_jobs()
    [path] = list(settings.outbox_dir.iterdir())  # no partial file left beside it
    assert path.name.endswith(f"-{email_id}.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "seller@example.com"
    assert message["From"] == settings.mail_from
    assert message["Subject"] == "Confirm your email address for ReFit"
    assert message["Message-ID"] == f"<{email_id}@refit.local>"
    plain_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert plain_part is not None and html_part is not None
    plain, html = plain_part.get_content(), html_part.get_content()
    assert "http://testserver/x?a=1&b=<2>" in plain
    # The HTML part escapes what the context carries.
    assert "http://testserver/x?a=1&amp;b=&lt;2&gt;" in html and "<2>" not in html

    row = await _email_row(resources, email_id)
    assert row.transport == "outbox" and row.sent_at is not None

    before = path.read_bytes()
    await _run_again(resources, run_jobs, email_id)
    assert list(settings.outbox_dir.iterdir()) == [path]
    assert path.read_bytes() == before


async def test_rolled_back_caller_sends_nothing(resources, settings, run_jobs):
    with pytest.raises(RuntimeError):
        async with resources.sessionmaker() as session, session.begin():
            await queue_email(
                session, to="seller@example.com", template="verify_email", context=_context()
            )
            raise RuntimeError("the caller's change failed")
    await run_jobs()
    assert await _jobs(resources) == []
    assert not settings.outbox_dir.exists()


async def test_smtp_with_credentials_from_the_url(resources, settings, run_jobs):
    async with smtp_server(username="mailer@refit", password="p@ss:word/1") as smtp:
        settings.smtp_url = smtp.url
        email_id = await _queue(resources, to="Buyer@Example.org")
        await run_jobs()
    [received] = smtp.messages
    assert received.login == "mailer@refit"
    assert received.rcpt_tos == ["Buyer@example.org"]
    assert received.message["Message-ID"] == f"<{email_id}@refit.local>"
    assert "Confirm" in received.html()
    assert (await _email_row(resources, email_id)).transport == "smtp"


async def test_temporary_refusal_is_retried_then_sent_once(resources, settings, run_jobs):
    async with smtp_server() as smtp:
        settings.smtp_url = smtp.url
        smtp.data_replies.append("451 4.3.0 Try again later")
        email_id = await _queue(resources)
        await run_jobs()
        [job] = await _jobs(resources)
        assert job.status == "todo" and job.attempts == 1  # retry scheduled, with backoff
        assert smtp.messages == []
        async with resources.sessionmaker() as session, session.begin():
            errors = await session.scalar(
                text("SELECT count(*) FROM job_errors WHERE job_id = :id"), {"id": job.id}
            )
            # Let the backoff elapse now rather than wait 3 seconds.
            await session.execute(
                text("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE id = :id"),
                {"id": job.id},
            )
        assert errors == 1
        await run_jobs()
    assert len(smtp.messages) == 1
    assert [j.status for j in await _jobs(resources)] == ["succeeded"]
    assert (await _email_row(resources, email_id)).sent_at is not None


@pytest.mark.parametrize("where", ["rcpt", "data"])
async def test_permanent_refusal_is_recorded_and_not_retried(resources, settings, run_jobs, where):
    async with smtp_server() as smtp:
        settings.smtp_url = smtp.url
        replies = smtp.rcpt_replies if where == "rcpt" else smtp.data_replies
        replies.append("550 5.1.1 No such user here")
        email_id = await _queue(resources, redact_after_send=True)
        await run_jobs()
    assert smtp.messages == []
    assert [j.status for j in await _jobs(resources)] == ["succeeded"]
    row = await _email_row(resources, email_id)
    assert row.failed_at is not None and row.sent_at is None
    assert "No such user" in row.error
    assert row.context == {}


async def test_a_retry_after_a_successful_send_does_not_resend(resources, settings, run_jobs):
    async with smtp_server() as smtp:
        settings.smtp_url = smtp.url
        email_id = await _queue(resources)
        await run_jobs()
        assert len(smtp.messages) == 1

        # The row says sent: a second run of the job stops there.
        await _run_again(resources, run_jobs, email_id)
        assert len(smtp.messages) == 1

        # The job's commit of `sent_at` lost after the server had accepted the message (the
        # process died, the database went away): the marker written right after the send
        # stops the retry from mailing it again.
        async with resources.sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE outbound_emails SET sent_at = NULL WHERE id = :id"), {"id": email_id}
            )
        await _run_again(resources, run_jobs, email_id)
        assert len(smtp.messages) == 1
    assert (await _email_row(resources, email_id)).sent_at is not None


async def test_notify_user_mails_only_a_verified_address(resources, settings, run_jobs, make_user):
    nobody = await make_user()
    unverified = await make_user(email="pending@example.com")
    verified = await make_user(email="verified@example.com")
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE users SET email_verified = true WHERE id = :id"), {"id": verified.id}
        )

    results = {}
    for seller in (nobody, unverified, verified):
        # In the seller's own transaction, as an order endpoint would call it: the mail log
        # and job rows are written past the seller's role, the seller's rows stay under RLS.
        async with resources.sessionmaker() as session, session.begin():
            await act_as_user(session, seller.id)
            results[seller.id] = await notify_user(
                session, seller.id, "verify_email", _context(price=Decimal("412.50"))
            )
    assert results[nobody.id] is None and results[unverified.id] is None
    assert results[verified.id] is not None

    await run_jobs()
    [path] = list(settings.outbox_dir.iterdir())
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "verified@example.com"
    row = await _email_row(resources, results[verified.id])
    assert row.user_id == verified.id
    assert row.context["price"] == "412.50"  # money kept exact, as a string


async def test_programming_errors_fail_at_the_caller(resources):
    with pytest.raises(ValueError, match="unknown email template"):
        await _queue(resources, template="../../etc/passwd")
    with pytest.raises(ValueError):
        await _queue(resources, to="not an address")
    with pytest.raises(TypeError):
        await _queue(resources, context=_context(when=object()))
