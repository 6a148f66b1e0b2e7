"""The job queue: procrastinate on our own PostgreSQL.

A job is written with `defer()` on the caller's session, inside its transaction, so it
exists if and only if the change that caused it commits. Jobs carry ids, re-read their rows
and check they still need doing, each in a `transactions.service_transaction(job=True)`.
Retries are procrastinate's own; a row whose job died anyway is given it again by its
domain's sweep (refit/sweeps.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import traceback
from contextlib import ExitStack
from typing import Any

import procrastinate
import psycopg_pool
import structlog
from procrastinate import builtin_tasks
from procrastinate import exceptions as pq_exceptions
from procrastinate.worker import Worker
from psycopg.types.json import Jsonb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from refit import db, logs, resources, transactions
from refit.log_setup import describe_error
from refit.one_message import Step
from refit.settings import get_settings

log = structlog.get_logger(__name__)

# Every module that declares tasks; the worker imports them all at start.
TASK_MODULES = [
    "refit.queue",
    "refit.idempotency",
    "refit.orders.tasks",
    "refit.auth.tasks",
    "refit.notifications.tasks",
    "refit.notifications.notify_tasks",
    "refit.shipping.tasks",
    "refit.shipping.webhook_tasks",
    "refit.carriers.sandbox.webhooks",
    "refit.payouts.tasks",
    "refit.payouts.treasury_readings",
]

queue = procrastinate.App(
    connector=procrastinate.PsycopgConnector(),
    import_paths=TASK_MODULES,
)


def exponential_retry(attempts: int, base_seconds: int = 2) -> procrastinate.RetryStrategy:
    """Run a job at most `attempts` times in all, waiting base, base², base³ … seconds between.

    procrastinate's `max_attempts` counts retries after the first run, hence the `- 1`.
    """
    return procrastinate.RetryStrategy(max_attempts=attempts - 1, exponential_wait=base_seconds)


async def defer(
    session: AsyncSession,
    task: procrastinate.tasks.Task[Any, Any, Any] | str,
    *,
    queueing_lock: str | None = None,
    lock: str | None = None,
    schedule_in: dict[str, int] | None = None,
    **task_kwargs: Any,
) -> int | None:
    """Write a job in the session's transaction. Returns its id, or None when a job with the
    same `queueing_lock` is already waiting (the caller's request then is a duplicate).

    `task` may be a task's name: a domain defers another domain's work without importing it.
    An unknown name raises (procrastinate's TaskNotFound) instead of queueing a job that no
    worker would ever run.

    With a `queueing_lock` the insert runs in a SAVEPOINT: a queueing-lock conflict rolls back
    only the savepoint. Without it PostgreSQL marks the whole transaction failed and COMMIT
    silently rolls back every write of the request. A job without one cannot conflict: its
    insert needs no savepoint (two round trips fewer).
    """
    name = task if isinstance(task, str) else task.name
    options: dict[str, Any] = {}
    if queueing_lock:
        options["queueing_lock"] = queueing_lock
    if lock:
        options["lock"] = lock
    if schedule_in:
        options["schedule_in"] = schedule_in
    # The queue's tables are system tables: never granted to the user's role.
    async with transactions.as_service(session):
        try:
            async with session.begin_nested() if queueing_lock else contextlib.nullcontext():
                # Asking for the connection inside begin_nested() is what emits the SAVEPOINT
                # (SQLAlchemy opens it lazily, on the next use of the connection).
                options["connection"] = await db.raw_connection(session)
                if isinstance(task, str):
                    deferrer = queue.configure_task(task, allow_unknown=False, **options)
                else:
                    deferrer = task.configure(**options)
                # The request (or job) deferring it, for the job's log lines and trace.
                job_id = await deferrer.defer_async(**task_kwargs, **logs.job_origin())
        except pq_exceptions.AlreadyEnqueued:
            log.info("queue.already_enqueued", task=name, queueing_lock=queueing_lock)
            return None
    log.info("queue.deferred", task=name, job_id=job_id)
    return job_id


@functools.cache
def _job_defaults(task: str) -> procrastinate.jobs.Job:
    # A task's queue, priority and lock do not change while the process runs.
    return queue.configure_task(task, allow_unknown=False).job


def defer_in_statement(task: str, args_sql: str) -> tuple[str, dict[str, Any]]:
    """An SQL expression that defers one job of `task` from inside the caller's own statement,
    and its parameters: for a write that is one statement in one round trip (the webhook
    intake), whose job then exists iff that statement commits, as with `defer`.

    `args_sql` is the job's arguments, a jsonb expression of the statement (the row's id,
    say), which carries the deferring request's origin as `defer` adds it
    (`logs.job_origin()`, read in that request): a statement may keep the deliveries of
    several requests. No queueing lock, whose conflict would fail the whole statement.
    """
    return _defer_jobs(task, f"({args_sql})")


def defer_step(
    task: str, *, queueing_lock: str | None = None, lock: str | None = None, **task_kwargs: Any
) -> Step:
    """`defer` as a statement of a transaction sent as messages (one_message.job_messages):
    the job exists iff that transaction commits. Its one row is the job's id (None: a job
    with the same `queueing_lock` is waiting, nothing was deferred).

    There is no savepoint to roll back to inside a message: a job waiting under the queueing
    lock is looked for first. One deferred by another transaction between that look and this
    insert fails the transaction (its job is run again), where `defer` would return None.
    """
    call, params = _defer_jobs(task, "%(job_args)s", lock=lock, queueing_lock=queueing_lock)
    sql = f"SELECT ({call})[1] AS id"
    if queueing_lock:
        sql += (
            " WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs "
            "WHERE queueing_lock = %(job_queueing_lock)s AND status = 'todo')"
        )
    log.info("queue.deferred_in_message", task=task)
    return Step(sql, {**params, "job_args": Jsonb({**task_kwargs, **logs.job_origin()})})


def _defer_jobs(
    task: str, args_sql: str, *, lock: str | None = None, queueing_lock: str | None = None
) -> tuple[str, dict[str, Any]]:
    """procrastinate's own insert of one job (`procrastinate_defer_jobs_v1`, which `defer`
    calls too), with the task's queue, priority and lock, as an SQL expression (an array of
    the one job's id) and its parameters; `args_sql` is the job's arguments, a jsonb
    expression."""
    job = _job_defaults(task)
    sql = (
        "procrastinate_defer_jobs_v1(ARRAY[ROW(%(job_queue)s::text, %(job_task)s::text, "
        f"%(job_priority)s::int, %(job_lock)s::text, %(job_queueing_lock)s::text, {args_sql}, NULL)"
        "::procrastinate_job_to_defer_v1])"
    )
    return sql, {
        "job_queue": job.queue,
        "job_task": job.task_name,
        "job_priority": job.priority,
        "job_lock": lock or job.lock,
        "job_queueing_lock": queueing_lock,
    }


async def hurry(session: AsyncSession, queueing_lock: str) -> int | None:
    """Make the job waiting under `queueing_lock` due now (a retry scheduled minutes ahead,
    when news says it would succeed now). Its id, or None when none is waiting."""
    async with transactions.as_service(session):
        job_id: int | None = await session.scalar(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() "
                "WHERE queueing_lock = :lock AND status = 'todo' RETURNING id"
            ),
            {"lock": queueing_lock},
        )
    return job_id


async def open_queue(
    database_url: str,
    *,
    max_size: int = 10,
    prepared_statements: bool = False,
    timeouts: db.Timeouts | None = None,
) -> ExitStack:
    """Connect the queue app to PostgreSQL for this process; close with `close_queue`.
    `timeouts`: the process's settings' when not given.

    The pool's connections get the connect timeout and keepalives, and let go at once of a
    statement whose caller gave up (db.BoundedConnection): /readyz's look at the workers'
    heartbeats must not outlast its own timeout by psycopg's 10 s of cancelling. No bound on
    answers (`answer_within`): the worker's LISTEN waits here, and procrastinate's clean-up of
    old jobs is a bulk delete."""
    timeouts = timeouts or db.Timeouts.from_settings(get_settings())
    connector = procrastinate.PsycopgConnector(
        conninfo=db.libpq_url(database_url),
        min_size=1,
        max_size=max_size,
        # Each of procrastinate's queries is one statement (a function call): in autocommit
        # it is its own transaction, one round trip, where a pooled transaction adds a BEGIN
        # and a COMMIT to each fetch and finish of a job.
        kwargs=db.connect_args(prepared_statements, timeouts),
        configure=db.autocommit,
        connection_class=db.BoundedConnection,
        pool_factory=db.psycopg_pool_pinging_when_idle,
    )
    stack = ExitStack()
    stack.enter_context(queue.replace_connector(connector))
    await queue.open_async()
    return stack


def job_connections() -> psycopg_pool.AsyncConnectionPool:
    """Where a job's transactions sent as messages (one_message.job_messages) take their
    connection: the queue's own pool, in every process that runs jobs (autocommit, pinged
    only after a pause, no bound on answers). The ORM's transactions keep the engine's."""
    pool: psycopg_pool.AsyncConnectionPool = queue.connector.pool  # type: ignore[attr-defined]
    return pool


async def close_queue(stack: ExitStack) -> None:
    await queue.close_async()
    stack.close()


async def _record_job_error(job: Any, exc: BaseException) -> None:
    try:
        await queue.connector.execute_query_async(
            """
            INSERT INTO job_errors (job_id, task_name, attempt, error_type, message, traceback)
            VALUES (%(job_id)s, %(task_name)s, %(attempt)s, %(error_type)s, %(message)s,
                    %(traceback)s)
            """,
            job_id=job.id,
            task_name=job.task_name,
            attempt=job.attempts + 1,
            error_type=type(exc).__name__,
            message=str(exc)[:2000],
            traceback="".join(traceback.format_exception(exc))[-8000:],
        )
    except Exception:
        # Recording is best effort: the job's own retry must not depend on it.
        log.exception("queue.job_error_not_recorded", job_id=job.id)


async def _job_middleware(call_next: Any, context: procrastinate.JobContext, worker: Any) -> Any:
    """Every log line of a job carries its id and task; every failed attempt is recorded."""
    job = context.job
    assert job is not None
    # observe_job: the deferring request's id, the job's span and Sentry scope, its metrics.
    with (
        logs.observe_job(context),
        structlog.contextvars.bound_contextvars(
            job_id=job.id, task=job.task_name, attempt=job.attempts + 1
        ),
    ):
        try:
            return await call_next()
        except Exception as exc:
            log.warning("queue.job_failed", error=describe_error(exc))
            await _record_job_error(job, exc)
            raise


def build_worker(*, wait: bool = True, install_signal_handlers: bool = True) -> Worker:
    """A worker for this process. `stop()` (or SIGINT/SIGTERM when it installs its handlers)
    lets running jobs finish, up to a minute, then exits."""
    settings = resources.current().settings
    # Register every task module's tasks: nothing else imports them (domains defer each
    # other's jobs by name), and a job whose task is not registered fails as unknown.
    queue.perform_import_paths()
    return Worker(
        app=queue,
        concurrency=settings.worker_concurrency,
        wait=wait,
        listen_notify=wait,
        install_signal_handlers=install_signal_handlers,
        update_heartbeat_interval=settings.worker_heartbeat_seconds,
        stalled_worker_timeout=settings.worker_stalled_after_seconds,
        shutdown_graceful_timeout=60,
        worker_middleware=[_job_middleware],
    )


class SupervisedWorker:
    """The worker of a process that must stay up: procrastinate's worker stops when it loses
    the database (its LISTEN connection fails, "stopping worker"); this starts a new one,
    after a backoff of up to `RESTART_MAX_SECONDS`, until `stop()` is called. A crash delays
    jobs, never strands them: the new worker takes them, and jobs the old one was running
    come back through the stalled-worker sweep."""

    RESTART_MAX_SECONDS = 30.0

    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._worker: Worker | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._worker is not None:
            self._worker.stop()

    async def run(self) -> None:
        wait = 1.0
        while not self._stopping.is_set():
            self._worker = build_worker(install_signal_handlers=False)
            started = asyncio.get_running_loop().time()
            try:
                await self._worker.run()
            except Exception as exc:
                log.error("queue.worker_failed", error=describe_error(exc))
            else:
                if self._stopping.is_set():
                    return
                log.error("queue.worker_stopped_unexpectedly")
            if asyncio.get_running_loop().time() - started > 60:
                wait = 1.0  # it had been running fine: this is a new trouble
            log.warning("queue.worker_restarting", in_seconds=wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)
            wait = min(wait * 2, self.RESTART_MAX_SECONDS)


async def run_until_empty(max_rounds: int = 20) -> None:
    """Run every job that is due, including the ones those jobs defer, then return (tests,
    one-off maintenance).

    A worker without `wait` stops when it finds nothing to take; with several jobs running at
    once, one that defers a follow-up (notify_user defers send_email) may finish just after
    the worker looked. So look again until nothing due is left.
    """
    for _ in range(max_rounds):
        await build_worker(wait=False, install_signal_handlers=False).run()
        due = await queue.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_jobs "
            "WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())"
        )
        if not due["n"]:
            return


async def worker_heartbeats() -> dict[str, Any]:
    """What /readyz and `refit worker-alive` report: live workers and the newest heartbeat."""
    settings = resources.current().settings
    row = await queue.connector.execute_query_one_async(
        """
        SELECT count(*) FILTER (WHERE last_heartbeat > now() - make_interval(secs => %(s)s))
                   AS alive,
               max(last_heartbeat) AS last_heartbeat
        FROM procrastinate_workers
        """,
        s=settings.worker_stalled_after_seconds,
    )
    last: dt.datetime | None = row["last_heartbeat"]
    return {"alive": row["alive"], "last_heartbeat": last.isoformat() if last else None}


async def retry_stalled_jobs(app: procrastinate.App) -> int:
    """Put back in the queue the jobs of workers that stopped sending heartbeats."""
    settings = resources.current().settings
    stalled = await app.job_manager.get_stalled_jobs(
        seconds_since_heartbeat=settings.worker_stalled_after_seconds
    )
    stalled = list(stalled)
    for job in stalled:
        log.warning("queue.stalled_job_retried", job_id=job.id, task=job.task_name)
        await app.job_manager.retry_job(job)
    return len(stalled)


@queue.periodic(cron="* * * * *")
@queue.task(
    name="queue.retry_stalled_jobs", queueing_lock="queue.retry_stalled_jobs", pass_context=True
)
async def retry_stalled_jobs_task(context: procrastinate.JobContext, timestamp: int) -> int:
    return await retry_stalled_jobs(context.app)


@queue.periodic(cron="17 3 * * *")
@queue.task(name="queue.remove_old_jobs", queueing_lock="queue.remove_old_jobs", pass_context=True)
async def remove_old_jobs_task(context: procrastinate.JobContext, timestamp: int) -> None:
    # Succeeded jobs are history; failed ones stay for operators to read and retry.
    await builtin_tasks.remove_old_jobs(
        context, max_hours=24 * 14, remove_failed=False, remove_cancelled=True
    )
