"""The job that renders and sends one email of the mail log."""

from __future__ import annotations

import datetime as dt
import uuid

import structlog

from refit import resources
from refit.models import OutboundEmail
from refit.notifications.render import build_message, render
from refit.notifications.senders import PermanentDeliveryError, sender_for
from refit.queue import exponential_retry, job_session, queue

log = structlog.get_logger(__name__)

# Waits of 3, 9, 27 ... 6561 s between attempts: an SMTP outage of up to ~3 hours is ridden out.
SEND_RETRY = exponential_retry(8, base_seconds=3)
SENT_MARKER_SECONDS = 7 * 24 * 3600


@queue.task(name="notifications.send_email", retry=SEND_RETRY)
async def send_email(email_id: str) -> None:
    """Send one logged email unless it already went out.

    Duplicates: the row is locked for the attempt and marked sent in the job's transaction. If
    that commit is lost after the server accepted the message (crash, database gone), the Redis
    marker written right after the send tells the retry it already went out. Only a crash in
    the instant between the server's acceptance and the marker can still send it twice.
    """
    res = resources.current()
    settings = res.settings
    marker = res.redis_key("mail-sent", email_id)
    async with job_session() as session:
        email = await session.get(OutboundEmail, uuid.UUID(email_id), with_for_update=True)
        if email is None or email.sent_at is not None or email.failed_at is not None:
            return
        if await _already_sent(res, marker):
            log.warning("notifications.send_recovered", email_id=email_id)
            _finish(email, transport=email.transport or "unknown")
            return
        rendered = render(settings, email.template, email.context)
        message = build_message(
            settings,
            email_id=email.id,
            recipient=email.recipient,
            rendered=rendered,
            created_at=email.created_at,
        )
        sender = sender_for(settings)
        key = f"{email.created_at.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{email.id}"
        email.subject = rendered.subject
        try:
            await sender.send(message, key=key)
        except PermanentDeliveryError as exc:
            log.warning("notifications.refused", email_id=email_id, error=str(exc))
            email.failed_at = dt.datetime.now(dt.UTC)
            email.error = str(exc)[:2000]
            if email.redact_after_send:
                email.context = {}
            return
        await _mark_sent(res, marker)
        _finish(email, transport=sender.name)
        log.info("notifications.sent", email_id=email_id, transport=sender.name)


def _finish(email: OutboundEmail, *, transport: str) -> None:
    email.sent_at = dt.datetime.now(dt.UTC)
    email.transport = transport
    if email.redact_after_send:
        email.context = {}


async def _already_sent(res: resources.Resources, marker: str) -> bool:
    try:
        return bool(await res.redis.exists(marker))
    except Exception as exc:
        # Without Redis we fall back on the row alone (the common case is right anyway).
        log.warning("notifications.marker_unreadable", error=repr(exc))
        return False


async def _mark_sent(res: resources.Resources, marker: str) -> None:
    try:
        await res.redis.set(marker, "1", ex=SENT_MARKER_SECONDS)
    except Exception as exc:
        # The message is out: failing the job now would send it again.
        log.warning("notifications.marker_unwritable", error=repr(exc))
