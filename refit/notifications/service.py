"""Queue an email inside the caller's transaction: it goes out iff the caller's change commits."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import structlog
from email_validator import validate_email
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
from refit.models import OutboundEmail, User
from refit.notifications.render import template_exists
from refit.notifications.tasks import defer_send

log = structlog.get_logger(__name__)


def _json_default(value: Any) -> Any:
    # Money stays exact (a string, as in the API); ids and times as their text forms.
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"email context value of type {type(value).__name__} is not JSON")


async def queue_email(
    session: AsyncSession,
    *,
    to: str,
    template: str,
    context: Mapping[str, Any],
    user_id: uuid.UUID | None = None,
    redact_after_send: bool = False,
    email_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Record an email in the mail log and defer `notifications.send_email` for it, both in the
    session's transaction. The job renders `template` with `context` (stored as JSON: Decimal,
    UUID and datetime values become strings). Returns the mail log id, `email_id` when given
    (a job derives it from its own id, so a rerun finds the email it already queued)."""
    if not template_exists(template):
        raise ValueError(f"unknown email template {template!r}")
    recipient = validate_email(to, check_deliverability=False).normalized
    payload = json.loads(json.dumps(dict(context), default=_json_default))
    email_id = email_id or uuid.uuid4()
    # Flush the caller's pending changes under the caller's own role first: the service role
    # below is for the mail log row only and must not carry anyone's rows past RLS.
    await session.flush()
    async with transactions.as_service(session):
        await session.execute(
            insert(OutboundEmail).values(
                id=email_id,
                user_id=user_id,
                recipient=recipient,
                template=template,
                context=payload,
                redact_after_send=redact_after_send,
            )
        )
    await defer_send(session, email_id)
    log.info("notifications.queued", email_id=str(email_id), template=template)
    return email_id


def log_skipped(user_id: uuid.UUID, template: str) -> None:
    log.info("notifications.skipped_no_verified_email", user_id=str(user_id), template=template)


async def notify_user(
    session: AsyncSession,
    user_id: uuid.UUID,
    template: str,
    context: Mapping[str, Any],
    *,
    email_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Email a seller, if they have a verified address (else nothing, and None)."""
    row = (
        await session.execute(select(User.email, User.email_verified).where(User.id == user_id))
    ).one_or_none()
    if row is None or not row.email or not row.email_verified:
        log_skipped(user_id, template)
        return None
    return await queue_email(
        session,
        to=row.email,
        template=template,
        context=context,
        user_id=user_id,
        email_id=email_id,
    )
