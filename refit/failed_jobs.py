"""Jobs an on-call operator looks at: failed ones (out of attempts, or failed for good), with
the last error our worker middleware recorded (`job_errors`, refit/queue.py); stuck ones
(running far longer than any job should, or due and not taken: no worker is taking jobs);
and the rows the sweeps gave up on (refit/sweeps.py). A failed job is retried with
procrastinate's own retry (`procrastinate_retry_job_v2`, what `JobManager.retry_job_by_id`
runs) on the operator's transaction, so the retry and its audit row commit together.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
from refit.admin import audit
from refit.errors import Conflict, NotFound
from refit.logs import JOB_ORIGIN_KEY
from refit.models import AuditOutcome

SHOWN = 100
# A job running this long is stuck (the longest, a label bought on a slow carrier, takes a
# minute or two); one due this long and not taken means no worker is taking jobs.
STUCK_RUNNING_SECONDS = 15 * 60
STUCK_DUE_SECONDS = 10 * 60


@dataclass(frozen=True)
class Job:
    id: int
    task: str
    status: str
    attempts: int
    args: dict[str, str]
    since: dt.datetime | None  # failed at, started at or due at: what makes it worth a look
    error: str | None
    error_at: dt.datetime | None


@dataclass(frozen=True)
class GaveUp:
    task: str
    row_id: uuid.UUID
    attempts: int
    gave_up_at: dt.datetime


def safe_args(args: dict[str, Any]) -> dict[str, str]:
    """The args an operator may read: ids, numbers and flags. Anything else (an address, a
    message) is shown as hidden: job args are not the place to read sellers' details."""
    shown: dict[str, str] = {}
    for key, value in args.items():
        if key == JOB_ORIGIN_KEY:
            continue
        if isinstance(value, bool | int) or value is None:
            shown[key] = str(value)
            continue
        try:
            shown[key] = str(uuid.UUID(str(value)))
        except ValueError:
            shown[key] = "(hidden)"
    return shown


_LAST_ERROR = """
    LEFT JOIN LATERAL (
      SELECT e.error_type || ': ' || e.message AS error, e.created_at AS error_at
      FROM job_errors e WHERE e.job_id = j.id ORDER BY e.created_at DESC LIMIT 1) e ON true"""


async def _jobs(session: AsyncSession, where: str, since: str, **binds: Any) -> list[Job]:
    rows = await session.execute(
        text(
            f"""
            SELECT j.id, j.task_name, j.status::text, j.attempts, j.args, {since} AS since,
                   e.error, e.error_at
            FROM procrastinate_jobs j {_LAST_ERROR}
            WHERE {where}
            ORDER BY j.id DESC LIMIT :shown
            """  # noqa: S608 (constant clauses of this module; values bound)
        ),
        {"shown": SHOWN, **binds},
    )
    return [
        Job(
            row.id,
            row.task_name,
            row.status,
            row.attempts,
            safe_args(row.args or {}),
            row.since,
            row.error,
            row.error_at,
        )
        for row in rows
    ]


def _event_at(kind: str) -> str:
    """When the job last had the event `kind` (one of this module's constants)."""
    return (
        "(SELECT max(v.at) FROM procrastinate_events v "  # noqa: S608 (a constant kind)
        f"WHERE v.job_id = j.id AND v.type = '{kind}')"
    )


async def failed(session: AsyncSession) -> list[Job]:
    async with transactions.as_service(session):
        return await _jobs(session, "j.status = 'failed'", _event_at("failed"))


async def stuck(session: AsyncSession) -> list[Job]:
    """Running for longer than STUCK_RUNNING_SECONDS, or due STUCK_DUE_SECONDS ago and not
    taken. A running job whose worker died comes back by itself (the stalled-jobs sweep,
    every minute): one here is alive and slow, or no worker runs at all."""
    where = f"""
        (j.status = 'doing' AND {_event_at("started")} < now() - make_interval(secs => :running))
        OR (j.status = 'todo' AND j.scheduled_at IS NOT NULL
            AND j.scheduled_at < now() - make_interval(secs => :due))
        OR (j.status = 'todo' AND j.scheduled_at IS NULL
            AND {_event_at("deferred")} < now() - make_interval(secs => :due))"""
    since = f"CASE WHEN j.status = 'doing' THEN {_event_at('started')} "
    since += f"ELSE coalesce(j.scheduled_at, {_event_at('deferred')}) END"
    async with transactions.as_service(session):
        return await _jobs(
            session, where, since, running=STUCK_RUNNING_SECONDS, due=STUCK_DUE_SECONDS
        )


async def gave_up(session: AsyncSession) -> list[GaveUp]:
    """Rows the sweeps stopped re-queueing (each flagged where its domain's operators look)."""
    async with transactions.as_service(session):
        rows = await session.execute(
            text(
                "SELECT task, row_id, attempts, gave_up_at FROM sweep_attempts "
                "WHERE gave_up_at IS NOT NULL ORDER BY gave_up_at DESC LIMIT :shown"
            ),
            {"shown": SHOWN},
        )
    return [GaveUp(*row) for row in rows.all()]


async def retry(session: AsyncSession, job_id: int, actor: str) -> str:
    """Put a failed job back in the queue, due now, audited; returns its task's name."""
    async with transactions.as_service(session):
        row = (
            await session.execute(
                text(
                    "SELECT task_name, status::text AS status, attempts, args "
                    "FROM procrastinate_jobs WHERE id = :id FOR UPDATE"
                ),
                {"id": job_id},
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"No job {job_id}", code="job_not_found")
        if row.status != "failed":
            raise Conflict(
                f"Only a failed job can be retried; job {job_id} is {row.status}",
                code="job_not_failed",
            )
        try:
            async with session.begin_nested():
                await session.execute(
                    text("SELECT procrastinate_retry_job_v2(:id, now(), NULL, NULL, NULL)"),
                    {"id": job_id},
                )
        except IntegrityError as exc:
            # Its queueing lock is held by a job of the same kind already waiting.
            raise Conflict(
                f"A {row.task_name} job for the same thing is already waiting; this one "
                "was left as it is",
                code="job_already_waiting",
            ) from exc
    await audit.record(
        session,
        actor,
        "job.retry",
        f"job:{job_id}",
        AuditOutcome.DONE,
        {"task": row.task_name, "attempts": row.attempts, "args": safe_args(row.args or {})},
    )
    return str(row.task_name)
