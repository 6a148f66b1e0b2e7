"""The periodic sweeps' one step: rows whose job died get it again, a bounded number of times.

A job exists exactly when its cause committed (refit/queue.py), yet it can end without
finishing its row: out of attempts through a long outage, deleted by hand, or done while the
row still waits (a payout held). Each domain's sweep names the rows that still need a job
(`Stuck`); `requeue_stuck` gives each one its job again and counts it in `sweep_attempts`.
A row re-queued REFIT_SWEEP_MAX_ATTEMPTS times is re-queued no more: the next time it is found
stuck it is flagged for an operator instead, once: an error log line naming the task and
the row, `refit_sweep_gave_up_total{task}`, and the domain's own mark on the row, where the
operators already look (an order's attention, a payout's or a webhook's error).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from refit import metrics, resources, transactions

log = structlog.get_logger(__name__)

# Rows looked at per run: the next run (minutes later) takes the rest.
BATCH = 500


@dataclass(frozen=True)
class Stuck:
    """The rows that need `task`'s job, and how the job is given to one of them."""

    task: str  # the job; it also names the kind of row in sweep_attempts, the log and metric
    rows: str  # "orders o [JOIN …] WHERE …": rows still needing the job (a constant clause)
    row_id: str  # the row's id in `rows` ("o.id"): what the job's `job_arg` carries
    since: str  # when the row last moved ("o.updated_at"): a row younger than the grace waits
    job_arg: str  # the job's argument naming the row ("order_id")
    # Defer the job for one row in the session's transaction; None: one is waiting already.
    requeue: Callable[[AsyncSession, uuid.UUID], Awaitable[int | None]]
    # Mark the row for an operator, in the same transaction, with the sentence given.
    flag: Callable[[AsyncSession, uuid.UUID, str], Awaitable[None]]


def gave_up_reason(task: str, attempts: int) -> str:
    """What the row is flagged with: the same words every time, so a mark is never doubled."""
    return (
        f"the sweep re-queued its {task} job {attempts} times and it ended each time without "
        "finishing; it is re-queued no more: an operator decides"
    )


async def requeue_stuck(stuck: Stuck, grace_seconds: float) -> int:
    """Give the job again to the rows `stuck` names that have not moved for `grace_seconds`
    and have no job of it waiting or running; flag those already re-queued the maximum number
    of times instead. Returns how many were re-queued."""
    max_attempts = resources.current().settings.sweep_max_attempts
    requeued: list[uuid.UUID] = []
    flagged: list[tuple[uuid.UUID, int]] = []
    async with transactions.service_transaction(job=True) as session:
        for row_id, attempts in await _find(session, stuck, grace_seconds):
            if attempts >= max_attempts:
                if await give_up(session, stuck.task, row_id):
                    await stuck.flag(session, row_id, gave_up_reason(stuck.task, attempts))
                    flagged.append((row_id, attempts))
            elif await stuck.requeue(session, row_id) is not None:
                await _count(session, stuck.task, row_id)
                requeued.append(row_id)
    # Said once the transaction has committed: what is logged and counted happened.
    if requeued:
        log.warning(
            "sweep.requeued",
            task=stuck.task,
            count=len(requeued),
            rows=[str(row_id) for row_id in requeued],
        )
    for row_id, attempts in flagged:
        metrics.SWEEP_GAVE_UP.labels(stuck.task).inc()
        log.error("sweep.gave_up", task=stuck.task, row_id=str(row_id), attempts=attempts)
    return len(requeued)


async def _find(
    session: AsyncSession, stuck: Stuck, grace_seconds: float
) -> list[tuple[uuid.UUID, int]]:
    """The stuck rows with no live job and not given up on, oldest first, with their count."""
    rows = await session.execute(
        text(
            f"""
            WITH stuck AS (
              SELECT {stuck.row_id} AS id, {stuck.since} AS since FROM {stuck.rows}
                AND {stuck.since} < now() - make_interval(secs => :grace)
                AND NOT EXISTS (
                  SELECT 1 FROM procrastinate_jobs j
                  WHERE j.task_name = :task AND j.status IN ('todo', 'doing')
                    AND j.args ->> :job_arg = {stuck.row_id}::text))
            SELECT s.id, coalesce(a.attempts, 0) FROM stuck s
            LEFT JOIN sweep_attempts a ON a.task = :task AND a.row_id = s.id
            WHERE a.gave_up_at IS NULL
            ORDER BY s.since
            LIMIT :batch
            """  # noqa: S608 (`stuck`'s clauses are its module's constants; values bound)
        ),
        {"grace": grace_seconds, "task": stuck.task, "job_arg": stuck.job_arg, "batch": BATCH},
    )
    return [(row_id, attempts) for row_id, attempts in rows.all()]


async def _count(session: AsyncSession, task: str, row_id: uuid.UUID) -> None:
    await session.execute(
        text(
            "INSERT INTO sweep_attempts (task, row_id, attempts) VALUES (:task, :row_id, 1) "
            "ON CONFLICT (task, row_id) DO UPDATE SET attempts = sweep_attempts.attempts + 1"
        ),
        {"task": task, "row_id": row_id},
    )


async def give_up(session: AsyncSession, task: str, row_id: uuid.UUID) -> bool:
    """Record that the sweep stopped (or must stop: a webhook's job that failed out of its
    attempts gives up here too, so the sweep re-queues it no more); False when another run
    already did (it flagged)."""
    stopped = await session.scalar(
        text(
            "INSERT INTO sweep_attempts (task, row_id, gave_up_at) VALUES (:task, :row_id, now()) "
            "ON CONFLICT (task, row_id) DO UPDATE SET gave_up_at = now() "
            "WHERE sweep_attempts.gave_up_at IS NULL RETURNING true"
        ),
        {"task": task, "row_id": row_id},
    )
    return bool(stopped)


async def start_over(session: AsyncSession, task: str, row_id: uuid.UUID) -> None:
    """Forget the row's re-queues and give-up: an operator replayed it, it counts from 0."""
    await session.execute(
        text("DELETE FROM sweep_attempts WHERE task = :task AND row_id = :row_id"),
        {"task": task, "row_id": row_id},
    )
