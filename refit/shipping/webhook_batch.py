"""The webhooks whose handling needs neither the carrier nor a lock on an order, settled
together: a `shipping.handle_webhook` job settles its own row so when it can, and with it up to
`QUEUED_PER_JOB` rows whose jobs are waiting, in one transaction of two messages.

A burst of carrier updates queues a job per event (refit/shipping/webhooks.py). Most of what
a job does for an update that names no order of ours (or an event we do not use) is the
queue's bookkeeping and its round trips: taking the job, reading the row, looking for the
parcel, writing the outcome, finishing the job. Here one message takes the waiting jobs, reads
their rows and looks for their parcels; the next writes every outcome, ends the waiting jobs
`succeeded` as the worker would have (through `doing`, with procrastinate's own finish, each
change in procrastinate_events by its triggers) and commits. The same outcomes on the same
rows as webhook_tasks.handle writes, in the transaction that ends their jobs.

Anything else (a parcel of ours, a `transaction_updated`, a label still being recorded, a body
that does not read as expected) is left to its own job, untouched: that job does what it
always did (refit/shipping/webhook_tasks.py). The parcel lookup is SQL's reading of the body;
the decision stays Python's (parse_track, as the job reads it): a row whose number or named
order Python reads otherwise than the lookup did is left to its own job. The waiting jobs
are taken `FOR UPDATE SKIP LOCKED`, as the worker takes a job: one another transaction holds
is not touched, and one taken here is not fetched meanwhile.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from refit import metrics
from refit.carriers.picker import parse_track
from refit.models import OrderStatus
from refit.one_message import JobMessages, Step, job_messages
from refit.queue import job_connections
from refit.shipping.webhooks import HANDLE_TASK

log = structlog.get_logger(__name__)

# Waiting jobs one job settles beside its own: enough that a burst costs the queue's
# bookkeeping a few times, not once per event; few enough that one transaction stays short.
QUEUED_PER_JOB = 50

NOTHING_TO_DO = "nothing to do"
IGNORED = "ignored"
NO_MATCH = "no matching order"

# The waiting jobs in the order of procrastinate's own index of them (status 'todo', by
# priority and id), read until enough are taken. Without this the planner, which guesses a
# handful of waiting jobs wherever the queue's table has no statistics (autovacuum off, or
# not yet run after a burst), reads and sorts every waiting job, and every entry left behind
# in that index by jobs run since its last vacuum: milliseconds a batch, growing with the
# burst. Only for the read (`SET LOCAL ... TO DEFAULT` after it, in the same message).
_IN_INDEX_ORDER = (Step("SET LOCAL enable_sort = off"), Step("SET LOCAL enable_bitmapscan = off"))
_AS_BEFORE = (
    Step("SET LOCAL enable_sort TO DEFAULT"),
    Step("SET LOCAL enable_bitmapscan TO DEFAULT"),
)
# A metadata naming an order ("order:<id>", "return:<id>") as the sandbox and our labels write it.
_NAMED = "^(order|return):([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"

# The job's own row, and up to `more` rows whose jobs wait (due, first by priority then age,
# skipping any another transaction holds). No queue is named: only a worker that takes every
# queue settles others' jobs, and procrastinate's index on the queue's name holds every job
# ever run. For each row, what webhook_tasks._find_parcel looks for: the orders with its
# tracking number (two are as many as matter), a return with it, the order its metadata names.
_READ = """
WITH waiting AS (
  SELECT j.id, (j.args ->> 'inbox_id')::uuid AS inbox_id
  FROM procrastinate_jobs j
  WHERE j.status = 'todo' AND j.task_name = %(task)s
    AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
  ORDER BY j.priority DESC, j.id
  LIMIT %(more)s
  FOR UPDATE OF j SKIP LOCKED
), rows AS (
  SELECT NULL::bigint AS job_id, %(own)s::uuid AS inbox_id
  UNION ALL
  SELECT id, inbox_id FROM waiting
), read AS (
  SELECT r.job_id, r.inbox_id, w.id IS NOT NULL AS found, w.event, w.body -> 'data' AS data,
         w.received_at, w.processed_at IS NOT NULL OR w.body IS NULL AS done,
         w.body -> 'data' ->> 'tracking_number' AS number,
         regexp_match(w.body -> 'data' ->> 'metadata', %(named)s) AS named
  FROM rows r LEFT JOIN webhook_inbox w ON w.id = r.inbox_id
)
SELECT read.job_id, read.inbox_id, read.found, read.event, read.data, read.received_at,
       read.done, read.number,
       (SELECT count(*) FROM (SELECT FROM orders o WHERE o.tracking_number = read.number
                              LIMIT 2) two)::int AS orders,
       EXISTS (SELECT FROM shipping_returns s WHERE s.tracking_number = read.number)
         AS returning_parcel,
       read.named[1] AS named_as, read.named[2]::uuid AS named_id,
       (SELECT o.status FROM orders o WHERE o.id = read.named[2]::uuid) AS named_status
FROM read
"""

_FINISH_ROWS = """
UPDATE webhook_inbox w SET outcome = v.outcome, order_id = NULL, processed_at = %(at)s
FROM unnest(%(ids)s::uuid[], %(outcomes)s::text[]) AS v(id, outcome)
WHERE w.id = v.id AND w.processed_at IS NULL
"""
# The waiting jobs' ends as the worker writes them: taken (todo -> doing, by this job's
# worker), then procrastinate's own finish (doing -> succeeded, an attempt counted).
_TAKE_JOBS = """
UPDATE procrastinate_jobs SET status = 'doing', worker_id = %(worker)s
WHERE id = ANY(%(jobs)s::bigint[]) AND status = 'todo'
"""
_FINISH_JOBS = """
SELECT procrastinate_finish_job_v1(id, 'succeeded', false) FROM unnest(%(jobs)s::bigint[]) id
"""


@dataclass(frozen=True)
class Queue:
    """The running job's worker: the jobs taken here are recorded as run by it."""

    worker_id: int | None


@dataclass
class _Row:
    job_id: int | None  # None: the running job's own row
    inbox_id: uuid.UUID
    found: bool
    event: str | None
    data: Any
    received_at: dt.datetime | None
    done: bool
    number: str | None  # as SQL read it
    orders: int
    returning_parcel: bool
    named_as: str | None
    named_id: uuid.UUID | None
    named_status: str | None
    outcome: str | None = None  # what is written on the row; None: nothing
    result: str | None = None  # the job's result; None: left to the row's own job


async def settle(inbox_id: uuid.UUID, queue: Queue | None) -> str | None:
    """Settle the row `inbox_id` if it needs neither the carrier nor an order's lock, and up to
    `QUEUED_PER_JOB` waiting rows likewise when its job's worker (`queue`) takes every queue,
    in one transaction. The own row's result ("nothing to do", "ignored", "no matching
    order"), or None when its handling is more than that: the caller does it."""
    params = {
        "task": HANDLE_TASK,
        "more": QUEUED_PER_JOB if queue else 0,
        "own": str(inbox_id),
        "named": _NAMED,
    }
    async with job_messages(job_connections()) as messages:
        results = await messages.send(*_IN_INDEX_ORDER, Step(_READ, params), *_AS_BEFORE)
        rows = [_Row(**r) for r in results[len(_IN_INDEX_ORDER)]]
        for row in rows:
            _decide(row)
        settled = [r for r in rows if r.result is not None]
        if settled:
            await _finish(messages, settled, queue)
    own = next(r for r in rows if r.job_id is None)
    return own.result


def _decide(row: _Row) -> None:
    """The row's result, where it needs neither the carrier nor an order's lock."""
    if not row.found or row.done:
        row.result = NOTHING_TO_DO
    elif row.event == "transaction_updated":
        return  # may hurry a label job: its own job does it
    elif row.event != "track_updated":
        row.outcome, row.result = f"ignored: {row.event} events are not used", IGNORED
    elif isinstance(row.data, dict):
        try:
            hint = parse_track(row.data)
        except Exception:  # its own job reads it again, and fails there if it must
            return
        if not _looked_up(row, hint.tracking_number, hint.metadata):
            return
        if row.orders == 1 or row.returning_parcel:
            return  # a parcel of ours: the carrier is asked, in its own job
        if row.orders > 1:
            # As _find_parcel: two orders claim one parcel, neither is moved.
            log.warning("shipping.webhook_tracking_number_ambiguous", tracking_number=row.number)
        elif (row.named_as, row.named_status) in (
            ("order", OrderStatus.PROCESSING_SHIPMENT.value),
            ("return", OrderStatus.RETURNING.value),
        ):
            return  # its number is being recorded: its own job waits and retries
        row.outcome = f"no order has tracking number {hint.tracking_number}"
        row.result = NO_MATCH


def _looked_up(row: _Row, number: str, metadata: str | None) -> bool:
    """Whether SQL looked for what Python reads in the body: the same number, the same order
    named (or none)."""
    named = (row.named_as, row.named_id) if row.named_as else None
    reads = next(
        ((p, i) for p in ("order", "return") if (i := named_order(metadata, p + ":"))), None
    )
    return bool(number) and row.number == number and named == reads


async def _finish(messages: JobMessages, settled: list[_Row], queue: Queue | None) -> None:
    at = dt.datetime.now(dt.UTC)
    outcomes = {r.inbox_id: r.outcome[:2000] for r in settled if r.outcome is not None}
    jobs = sorted({r.job_id for r in settled if r.job_id is not None})
    steps = []
    if outcomes:
        ids = [str(i) for i in outcomes]
        steps.append(Step(_FINISH_ROWS, {"at": at, "ids": ids, "outcomes": [*outcomes.values()]}))
    if jobs:
        worker = queue.worker_id if queue else None
        steps.append(Step(_TAKE_JOBS, {"jobs": jobs, "worker": worker}))
        steps.append(Step(_FINISH_JOBS, {"jobs": jobs}))
    if steps:
        await messages.send(*steps, commit=True)
    for row in settled:
        if row.outcome is not None and row.received_at is not None:
            metrics.WEBHOOK_LAG.observe((at - row.received_at).total_seconds())
        if row.job_id is not None:
            log.info(
                "shipping.webhook_handled",
                inbox_id=str(row.inbox_id),
                outcome=row.result,
                settled_by_job=True,
                queued_job_id=row.job_id,
            )
    if jobs:
        metrics.JOBS.labels(HANDLE_TASK, "succeeded").inc(len(jobs))


def named_order(metadata: str | None, prefix: str) -> uuid.UUID | None:
    """The order a parcel's metadata names ("order:<id>", "return:<id>"), if it does."""
    if not metadata or not metadata.startswith(prefix):
        return None
    try:
        return uuid.UUID(metadata.removeprefix(prefix))
    except ValueError:
        return None
