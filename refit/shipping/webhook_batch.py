"""The webhooks whose handling needs neither the carrier nor a lock on an order, settled
together: a `shipping.handle_webhook` job settles its own row so when it can, and with it up to
`QUEUED_PER_JOB` rows whose jobs are waiting, in its first transaction.

A burst of carrier updates queues a job per event (refit/shipping/webhooks.py). Most of what
a job does for an update that names no order of ours (or an event we do not use) is the
queue's bookkeeping and the round trips: taking the job, reading the row, looking for the
parcel, writing the outcome, finishing the job. Here a job reads its row and the waiting ones
in one statement, looks for all their parcels in one, and writes every outcome with the
waiting jobs' ends in one message: the same outcomes on the same rows, each waiting job ended
`succeeded` as the worker would have (through `doing`, with procrastinate's own finish), in the
transaction that wrote its row's outcome.

Anything else (a parcel of ours, a `transaction_updated`, a label still being recorded, a body
that does not read as expected) is left to its own job, untouched: that job does what it
always did (refit/shipping/webhook_tasks.py). The waiting jobs are taken `FOR UPDATE SKIP
LOCKED`, as the worker takes a job: a job another worker holds, or another batch, is not
touched, and a job taken here is not fetched meanwhile.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from refit import metrics
from refit.carriers.picker import parse_track
from refit.models import OrderStatus
from refit.one_message import Step, in_one_message
from refit.shipping.webhooks import HANDLE_TASK

log = structlog.get_logger(__name__)

# Waiting jobs one job settles beside its own: enough that a burst costs the queue's
# bookkeeping a few times, not once per event; few enough that one transaction stays short.
QUEUED_PER_JOB = 50

NOTHING_TO_DO = "nothing to do"
IGNORED = "ignored"
NO_MATCH = "no matching order"

# The job's own row, and up to `more` rows whose jobs wait (taken as the worker takes a job: due,
# first by priority then age, skipping any another transaction holds). Only for a worker that
# takes every queue (ours do: queue.build_worker), so no queue is named: procrastinate's index
# on the queue's name holds every job ever run.
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
)
SELECT r.job_id, r.inbox_id, w.id IS NOT NULL AS found, w.event, w.body -> 'data' AS data,
       w.received_at, w.processed_at IS NOT NULL OR w.body IS NULL AS done
FROM rows r LEFT JOIN webhook_inbox w ON w.id = r.inbox_id
"""
# The waiting jobs in the order of procrastinate's own index of them (status 'todo', by
# priority and id), read until enough are taken. Without this the planner, which guesses a
# handful of waiting jobs wherever the queue's table has no statistics (autovacuum off, or
# not yet run after a burst), reads and sorts every waiting job, and every entry left behind
# in that index by jobs run since its last vacuum: milliseconds a batch, growing with the
# burst. Only for this statement (`SET LOCAL ... TO DEFAULT` after it, in the same message).
_IN_INDEX_ORDER = (Step("SET LOCAL enable_sort = off"), Step("SET LOCAL enable_bitmapscan = off"))
_AS_BEFORE = (
    Step("SET LOCAL enable_sort TO DEFAULT"),
    Step("SET LOCAL enable_bitmapscan TO DEFAULT"),
)

# What `webhook_tasks._find_parcel` would look for, for every row at once.
_PARCELS = """
SELECT 'order' AS kind, tracking_number AS key, count(*)::int AS n
FROM orders WHERE tracking_number = ANY(%(numbers)s::text[]) GROUP BY tracking_number
UNION ALL
SELECT 'return', tracking_number, count(*)::int
FROM shipping_returns WHERE tracking_number = ANY(%(numbers)s::text[]) GROUP BY tracking_number
UNION ALL
SELECT 'labelling', id::text, 1 FROM orders
WHERE id = ANY(%(labelling)s::uuid[]) AND status = %(labelling_status)s
UNION ALL
SELECT 'returning', id::text, 1 FROM orders
WHERE id = ANY(%(returning)s::uuid[]) AND status = %(returning_status)s
"""

_FINISH_ROWS = """
UPDATE webhook_inbox w SET outcome = v.outcome, order_id = NULL, processed_at = %(at)s
FROM unnest(%(ids)s::uuid[], %(outcomes)s::text[]) AS v(id, outcome)
WHERE w.id = v.id AND w.processed_at IS NULL
"""
# The waiting jobs' ends as the worker writes them: taken (todo -> doing, by this job's
# worker), then procrastinate's own finish (doing -> succeeded, an attempt counted); each
# change recorded in procrastinate_events by its triggers, as for any job.
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
    number: str = ""
    labelling: uuid.UUID | None = None
    returning: uuid.UUID | None = None
    outcome: str | None = None  # what is written on the row; None: nothing
    result: str | None = None  # the job's result; None: left to the row's own job


async def settle(session: AsyncSession, inbox_id: uuid.UUID, queue: Queue | None) -> str | None:
    """Settle the row `inbox_id` if it needs neither the carrier nor an order's lock, and up to
    `QUEUED_PER_JOB` waiting rows likewise when its job's worker (`queue`) takes every queue,
    in the session's transaction. The own row's result ("nothing to do", "ignored", "no
    matching order"), or None when its handling is more than that: the caller does it."""
    params = {"task": HANDLE_TASK, "more": QUEUED_PER_JOB if queue else 0, "own": str(inbox_id)}
    results = await in_one_message(session, *_IN_INDEX_ORDER, Step(_READ, params), *_AS_BEFORE)
    found = results[len(_IN_INDEX_ORDER)]
    rows = [_Row(**r) for r in found]
    for row in rows:
        _read(row)
    await _look_for_parcels(session, rows)
    settled = [r for r in rows if r.result is not None]
    if not settled:
        return None
    await _finish(session, settled, queue)
    own = next(r for r in rows if r.job_id is None)
    return own.result


def _read(row: _Row) -> None:
    """The row's result where it needs no lookup; else what the parcel lookup needs."""
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
        row.number = hint.tracking_number
        row.labelling = named_order(hint.metadata, "order:")
        row.returning = named_order(hint.metadata, "return:")


async def _look_for_parcels(session: AsyncSession, rows: list[_Row]) -> None:
    """For each track update: no order's parcel (nor its way home, nor a label being
    recorded) -> no match, settled here; any of those -> left to its own job."""
    tracks = [r for r in rows if r.result is None and r.number]
    if not tracks:
        return
    params = {
        "numbers": sorted({r.number for r in tracks}),
        "labelling": sorted({str(r.labelling) for r in tracks if r.labelling}),
        "returning": sorted({str(r.returning) for r in tracks if r.returning}),
        "labelling_status": OrderStatus.PROCESSING_SHIPMENT.value,
        "returning_status": OrderStatus.RETURNING.value,
    }
    [found] = await in_one_message(session, Step(_PARCELS, params))
    known = {(f["kind"], f["key"]): f["n"] for f in found}
    for row in tracks:
        orders = known.get(("order", row.number), 0)
        if orders == 1 or ("return", row.number) in known:
            continue  # a parcel of ours: the carrier is asked, in its own job
        if orders > 1:
            # As _find_parcel: two orders claim one parcel, neither is moved.
            log.warning("shipping.webhook_tracking_number_ambiguous", tracking_number=row.number)
        elif ("labelling", str(row.labelling)) in known or ("returning", str(row.returning)) in (
            known
        ):
            continue  # its number is being recorded: its own job waits and retries
        row.outcome = f"no order has tracking number {row.number}"
        row.result = NO_MATCH


async def _finish(session: AsyncSession, settled: list[_Row], queue: Queue | None) -> None:
    at = dt.datetime.now(dt.UTC)
    outcomes = {r.inbox_id: r.outcome for r in settled if r.outcome is not None}
    jobs = sorted({r.job_id for r in settled if r.job_id is not None})
    steps = []
    if outcomes:
        steps.append(
            Step(
                _FINISH_ROWS,
                {
                    "at": at,
                    "ids": [str(i) for i in outcomes],
                    "outcomes": [o[:2000] for o in outcomes.values()],
                },
            )
        )
    if jobs:
        worker = queue.worker_id if queue else None
        steps.append(Step(_TAKE_JOBS, {"jobs": jobs, "worker": worker}))
        steps.append(Step(_FINISH_JOBS, {"jobs": jobs}))
    if steps:
        await in_one_message(session, *steps)
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
