"""The job that renders and sends one email of the mail log.

No transaction is open while the message travels: a slow SMTP server (up to the sender's
timeout) must not keep the mail log row locked, nor a pooled connection checked out. The job
runs in three steps: prepare (one short transaction), send (none), record (one short
transaction). Files the email carries are read from storage between prepare and send: from a
bucket that is a network call too.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from refit import resources
from refit.log_setup import describe_error
from refit.models import OutboundEmail
from refit.notifications.render import (
    Attachment,
    RenderedEmail,
    attachments_of,
    build_message,
    render,
)
from refit.notifications.senders import PermanentDeliveryError, sender_for
from refit.queue import defer, exponential_retry, queue
from refit.settings import Settings
from refit.storage import LabelNotFound, label_storage
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

# Waits of 3, 9, 27 ... 6561 s between attempts: an SMTP outage of up to ~3 hours is ridden out.
SEND_RETRY = exponential_retry(8, base_seconds=3)
SENT_MARKER_SECONDS = 7 * 24 * 3600


async def defer_send(session: AsyncSession, email_id: uuid.UUID) -> None:
    """Defer `notifications.send_email` for a mail log row, in the session's transaction."""
    # The row is not locked during the send, so nothing in the database stops a second job for
    # the same email (a duplicate defer, a stalled job put back) from sending it at the same
    # time. procrastinate never runs two jobs with the same lock at once: the second starts
    # only after the first has finished and finds the row already marked.
    await defer(session, send_email, lock=f"email:{email_id}", email_id=str(email_id))


@queue.task(name="notifications.send_email", retry=SEND_RETRY)
async def send_email(email_id: str) -> None:
    """Send one logged email unless it already went out.

    Duplicates: the row is marked sent right after the send. If that commit is lost after the
    server accepted the message (crash, database gone), the Redis marker written right after
    the send tells the retry it already went out. Only a crash in the instant between the
    server's acceptance and the marker can still send it twice.
    """
    res = resources.current()
    row_id = uuid.UUID(email_id)
    marker = res.redis_key("mail-sent", email_id)
    # Read before the transaction, so no network call happens while the row is locked. Only a
    # job for this email writes the marker and those never overlap (see `defer_send`), so it
    # cannot change between this read and the row's.
    already_sent = await _already_sent(res, marker)
    draft = await _prepare(res.settings, row_id, already_sent=already_sent)
    if draft is None:
        return
    files = await _read_attachments(res.settings, row_id, draft.attachments)
    message = build_message(
        res.settings,
        email_id=row_id,
        recipient=draft.recipient,
        rendered=draft.rendered,
        created_at=draft.created_at,
        attachments=files,
    )
    sender = sender_for(res.settings)
    try:
        await sender.send(message, key=draft.key)
    except PermanentDeliveryError as exc:
        log.warning("notifications.refused", email_id=email_id, error=str(exc))
        await _record_refused(row_id, error=str(exc))
        return
    await _mark_sent(res, marker)
    await _record_sent(row_id, transport=sender.name)
    log.info("notifications.sent", email_id=email_id, transport=sender.name)


@dataclass(frozen=True)
class _Draft:
    """What the prepare step read from the mail log row: all the message needs but its files."""

    recipient: str
    rendered: RenderedEmail
    created_at: dt.datetime
    key: str
    attachments: list[Attachment]


async def _prepare(settings: Settings, email_id: uuid.UUID, *, already_sent: bool) -> _Draft | None:
    """Step 1, one short transaction: the rendered email and its outbox key, or None when the
    email needs nothing more. The rendered subject is recorded, committed before the send."""
    async with service_transaction(job=True) as session:
        email = await _unfinished(session, email_id)
        if email is None:
            return None
        if already_sent:
            log.warning("notifications.send_recovered", email_id=str(email_id))
            _finish(email, transport=email.transport or "unknown")
            return None
        # A missing template or context key raises here: the job fails loudly, nothing sent.
        rendered = render(settings, email.template, email.context)
        attachments = attachments_of(email.context)
        email.subject = rendered.subject
        return _Draft(
            recipient=email.recipient,
            rendered=rendered,
            created_at=email.created_at,
            key=f"{email.created_at.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{email.id}",
            attachments=attachments,
        )


async def _read_attachments(
    settings: Settings, email_id: uuid.UUID, attachments: list[Attachment]
) -> list[tuple[Attachment, bytes]]:
    """Step 2a, no transaction: the bytes of every file the email carries. A missing or
    unreadable file fails the job, retried with its backoff and then left failed for an
    operator: the email is never sent without what it says it carries."""
    if not attachments:
        return []
    storage = label_storage(settings)
    files = []
    for attachment in attachments:
        try:
            files.append((attachment, await storage.get(attachment.storage_key)))
        except LabelNotFound:
            log.error(
                "notifications.attachment_missing",
                email_id=str(email_id),
                storage_key=attachment.storage_key,
            )
            raise
    return files


async def _record_sent(email_id: uuid.UUID, *, transport: str) -> None:
    """Step 3 after an accepted send, one short transaction."""
    async with service_transaction(job=True) as session:
        email = await _unfinished(session, email_id)
        if email is not None:
            _finish(email, transport=transport)


async def _record_refused(email_id: uuid.UUID, *, error: str) -> None:
    """Step 3 after a permanent refusal, one short transaction: never retried."""
    async with service_transaction(job=True) as session:
        email = await _unfinished(session, email_id)
        if email is not None:
            email.failed_at = dt.datetime.now(dt.UTC)
            email.error = error[:2000]
            if email.redact_after_send:
                email.context = {}


async def _unfinished(session: AsyncSession, email_id: uuid.UUID) -> OutboundEmail | None:
    """The row, locked for this transaction, unless it is gone or already marked (a run before
    this one finished it: this run then changes nothing)."""
    email = await session.get(OutboundEmail, email_id, with_for_update=True)
    if email is None or email.sent_at is not None or email.failed_at is not None:
        return None
    return email


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
        log.warning("notifications.marker_unreadable", error=describe_error(exc))
        return False


async def _mark_sent(res: resources.Resources, marker: str) -> None:
    try:
        await res.redis.set(marker, "1", ex=SENT_MARKER_SECONDS)
    except Exception as exc:
        # The message is out: failing the job now would send it again.
        log.warning("notifications.marker_unwritable", error=describe_error(exc))
