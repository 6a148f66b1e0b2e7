"""The bookkeeping of a kept webhook's handling: its failed attempts, giving up on it, and an
operator's replay.

Every run of `shipping.handle_webhook` that raises is counted on the row (`attempts`, with the
last error). At REFIT_WEBHOOK_MAX_ATTEMPTS the row is given up on the way the sweeps give up
(refit/sweeps.py): its `sweep_attempts` row is marked, so the webhook sweep re-queues it no
more, and its `error` says why, where operators look (the dashboard's webhook inbox). A
replay from there starts over: the count, the error and the sweep's record cleared, and a job
deferred through the same `requeue` the sweep uses, in the operator's transaction, audited.
"""

from __future__ import annotations

import datetime as dt
import uuid

import structlog
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from refit import metrics, queue, resources, sweeps, transactions
from refit.admin import audit
from refit.errors import Conflict, NotFound
from refit.log_setup import describe_error
from refit.models import AuditOutcome
from refit.models.shipping import WebhookInbox
from refit.shipping.webhooks import HANDLE_TASK
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

MAX_ERROR_CHARS = 2000


def gave_up_reason(attempts: int, error: str) -> str:
    return (
        f"its handling failed {attempts} times (REFIT_WEBHOOK_MAX_ATTEMPTS), last with "
        f"{error}; it is retried no more: replay it once the cause is fixed"
    )[:MAX_ERROR_CHARS]


async def requeue(session: AsyncSession, inbox_id: uuid.UUID) -> int | None:
    """The row's job, in the session's transaction; None when one is waiting already."""
    return await queue.defer(
        session, HANDLE_TASK, queueing_lock=f"webhook:{inbox_id}", inbox_id=str(inbox_id)
    )


async def flag(session: AsyncSession, inbox_id: uuid.UUID, reason: str) -> None:
    # Kept with its error for an operator, as a body that could not be parsed is.
    row = await session.get(WebhookInbox, inbox_id, with_for_update=True)
    if row is not None:
        row.error = reason


async def record_failure(inbox_id: uuid.UUID, exc: BaseException) -> bool:
    """Count one failed handling, in a transaction of its own (the handling's rolled back).
    True when the row is given up on now or was already: the job then stops retrying."""
    max_attempts = resources.current().settings.webhook_max_attempts
    error = describe_error(exc)
    async with service_transaction(job=True) as session:
        attempts = await session.scalar(
            update(WebhookInbox)
            .where(WebhookInbox.id == inbox_id, WebhookInbox.processed_at.is_(None))
            .values(
                attempts=WebhookInbox.attempts + 1,
                last_error=error[:MAX_ERROR_CHARS],
                last_attempt_at=dt.datetime.now(dt.UTC),
            )
            .returning(WebhookInbox.attempts)
        )
        if attempts is None or attempts < max_attempts:
            return False
        gave_up = await sweeps.give_up(session, HANDLE_TASK, inbox_id)
        if gave_up:
            await flag(session, inbox_id, gave_up_reason(attempts, error))
    if gave_up:
        metrics.SWEEP_GAVE_UP.labels(HANDLE_TASK).inc()
        log.error("shipping.webhook_gave_up", inbox_id=str(inbox_id), attempts=attempts)
    return True


async def replay(session: AsyncSession, inbox_id: uuid.UUID, actor: str) -> int | None:
    """Handle a kept webhook again: its count and error cleared, its job deferred (None: one
    was waiting already). Refused for a body that was handled or could not be read."""
    row = await session.get(WebhookInbox, inbox_id, with_for_update=True)
    if row is None:
        raise NotFound(f"No webhook {inbox_id} in the inbox", code="webhook_not_found")
    if row.processed_at is not None:
        raise Conflict("This webhook was handled already", code="webhook_handled")
    if row.body is None:
        raise Conflict(
            "This body could not be read; replaying it would not read better",
            code="webhook_unreadable",
        )
    before = {"attempts": row.attempts, "error": row.error, "last_error": row.last_error}
    row.attempts = 0
    row.error = None
    row.last_error = None
    await sweeps.start_over(session, HANDLE_TASK, inbox_id)
    # A job still retrying (its next run maybe half an hour away) runs now; else a new one.
    job_id = await _hurry(session, inbox_id) or await requeue(session, inbox_id)
    await audit.record(
        session,
        actor,
        "webhook.replay",
        f"webhook:{inbox_id}",
        AuditOutcome.DONE,
        {**before, "job_id": job_id},
    )
    return job_id


async def _hurry(session: AsyncSession, inbox_id: uuid.UUID) -> int | None:
    async with transactions.as_service(session):
        job_id: int | None = await session.scalar(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() "
                "WHERE task_name = :task AND status = 'todo' AND args ->> 'inbox_id' = :id "
                "RETURNING id"
            ),
            {"task": HANDLE_TASK, "id": str(inbox_id)},
        )
    return job_id
