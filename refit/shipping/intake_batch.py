"""The webhook intake's group commit: deliveries arriving while this process's last statement
is out are kept together, in one statement and one commit, on the hot path's connections.

A carrier's burst is many small writes, each until now its own statement and its own commit
(a WAL flush each): at 800-860 webhooks/s on 2 cores the commits were the limit (with
PostgreSQL told not to wait for them, an experiment only, the same load ran at 1,300/s).
Here the first delivery goes out at once, alone; those that arrive while it is out wait for
it and go together next, so a quiet minute costs nothing in latency and a burst costs a
commit per batch. Each request is answered after its batch commits, as before after its
own; a request hung up meanwhile takes nothing with it (the batch goes on in a task of its
own, and its row is kept, as it would have been had the hang-up come a moment later).

Within a batch an event is kept once: ON CONFLICT DO NOTHING skips a key inserted earlier by
the same statement, as one inserted by an earlier one, and the first delivery (in arrival
order) is the one kept; the others answer `duplicate`, as after it. A statement PostgreSQL
refuses for what one body holds (jsonb that cannot be stored) fails the whole batch: it is
sent again one delivery at a time, so only that delivery gets the error (and the intake's
answer to it). An outage fails the batch and every delivery waiting behind it at once: 503s,
and the carrier's redelivery. No delivery waits to go out longer than a statement waits for a
connection (REFIT_DB_SELLER_READ_WAIT_SECONDS): one left waiting is answered 503, unwritten.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import weakref
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from refit import logs, queue
from refit.hot_path import HotPath, HotPathDown, positional

HANDLE_TASK = "shipping.handle_webhook"
PROVIDER = "shippo"
# Deliveries in one statement at most: a batch stays a few milliseconds of work.
MAX_BATCH = 200

# Each row once per event, and for each row kept (a body that reads) its job, with the
# origin of the request that delivered it; in the statement's own (implicit) transaction, so
# a job exists iff its row was kept. Inserted in key order, the first delivery of a key (in
# arrival order, `n`) first: two processes' batches sharing keys take their index entries in
# the same order, so neither waits on the other while holding one it waits for (a
# deadlock). `first` has one row per key, so the job is deferred once per row kept. Text
# cast to jsonb, as asyncpg's jsonb codec would encode a str once more. The statement timeout
# is asyncpg's (a cancel sent at the bound), so a 503 may come after the batch was kept, as
# any answer lost after a commit: the carrier's redelivery is then a `duplicate`.
_KEEP = """
WITH given AS (
  SELECT * FROM unnest(
    %(events)s::text[], %(keys)s::text[], %(tests)s::bool[], %(bodies)s::text[],
    %(raws)s::text[], %(errors)s::text[], %(origins)s::text[]
  ) WITH ORDINALITY AS g(event, key, test, body, raw, error, origin, n)
), kept AS (
  INSERT INTO webhook_inbox (provider, event, dedupe_key, test, body, raw_body, error)
  SELECT %(provider)s, event, key, test, body::jsonb, raw, error FROM given ORDER BY key, n
  ON CONFLICT ON CONSTRAINT uq_webhook_inbox_provider_dedupe_key DO NOTHING
  RETURNING id, dedupe_key, error
), first AS (
  SELECT DISTINCT ON (key) key, origin FROM given ORDER BY key, n
)
SELECT kept.id, kept.dedupe_key,
       CASE WHEN kept.error IS NULL THEN {defer} END AS job_ids
FROM kept JOIN first ON first.key = kept.dedupe_key
"""
# What PostgreSQL refuses a batch for because of what one delivery holds (data it cannot
# store, a value past a limit), or a conflict with another process's batch: sent again one
# delivery at a time. Anything else (an outage, a cancel at the timeout) is every delivery's.
_ONE_DELIVERYS_FAULT = (
    asyncpg.DataError,
    asyncpg.ProgramLimitExceededError,
    asyncpg.TransactionRollbackError,
)


@dataclass
class Delivery:
    """One webhook as the intake read it: what its row holds."""

    event: str | None
    key: str
    test: bool | None
    body: str | None  # the bytes as sent, for PostgreSQL to read as jsonb; None: unreadable
    raw: str | None  # kept as text when the body is unreadable
    error: str | None
    # The request's id and trace, for its job: read when the delivery is made (the request's
    # context), not when its batch goes out.
    origin: str = field(default_factory=lambda: json.dumps(logs.job_origin()))


@dataclass(eq=False)  # each one itself: two deliveries of one event are two waiting
class _Waiting:
    delivery: Delivery
    kept: asyncio.Future[Any]  # the row's id, None for a duplicate, or the batch's error


class IntakeBatcher:
    """One per hot path (`batcher_for`), so one per API process: the deliveries waiting to go
    out, and the one task sending them."""

    def __init__(self, hot_path: HotPath) -> None:
        # Weak: the registry below is keyed by the hot path, which must stay collectable.
        self._hot_path = weakref.ref(hot_path)
        # How long a delivery may wait to go out, as a statement waits for a connection:
        # a statement that hangs (no statement timeout) must not hold every later delivery.
        self._wait_seconds = hot_path.wait_seconds
        self._waiting: list[_Waiting] = []
        self._sending: asyncio.Task[None] | None = None

    async def keep(self, delivery: Delivery) -> Any:
        """The new row's id, or None when the event was already kept; after the commit."""
        waiting = _Waiting(delivery, asyncio.get_running_loop().create_future())
        # Read even when the request hung up first: an error nobody awaits is not news.
        waiting.kept.add_done_callback(_retrieved)
        self._waiting.append(waiting)
        if self._sending is None or self._sending.done():
            # In a context of its own: the task outlives the request that started it, whose
            # request id and trace must not name what it does for the others.
            self._sending = asyncio.create_task(
                self._send_all(), name="shipping.intake_batch", context=contextvars.Context()
            )
            self._sending.add_done_callback(self._sent)
        # Not cancelled with the request: a hang-up leaves its delivery in the batch, and the
        # batch alone.
        await asyncio.wait({waiting.kept}, timeout=self._wait_seconds)
        if not waiting.kept.done() and waiting in self._waiting:
            self._waiting.remove(waiting)  # never went out: nothing was written
            waiting.kept.cancel()
            raise HotPathDown(f"no intake statement went out within {self._wait_seconds} s")
        return await asyncio.shield(waiting.kept)

    async def _send_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            await self._send(batch)

    def _sent(self, task: asyncio.Task[None]) -> None:
        if self._sending is not task:
            return  # a later task has taken over
        self._sending = None
        if task.cancelled():
            # Cancelled before it ran (or mid-statement): nobody will send these.
            left, self._waiting = self._waiting, []
            for waiting in left:
                waiting.kept.cancel()

    async def _send(self, batch: list[_Waiting]) -> None:
        try:
            hot_path = self._hot_path()
            if hot_path is None:
                raise HotPathDown("the hot path is closed")
            rows = await hot_path.write(*keep_statement([w.delivery for w in batch]))
        except _ONE_DELIVERYS_FAULT as exc:
            if len(batch) > 1:
                for waiting in batch:  # only the delivery PostgreSQL refuses gets its error
                    await self._send([waiting])
            elif isinstance(exc, asyncpg.TransactionRollbackError):
                # Alone, it met another process's batch: the carrier's redelivery will do.
                _settle(batch[0].kept, error=HotPathDown(f"{type(exc).__name__} {exc}"))
            else:
                _settle(batch[0].kept, error=exc)
            return
        except Exception as exc:
            # An outage: this batch and every delivery waiting behind it are answered 503 now
            # (the carrier delivers again), not each after a statement timeout of its own.
            left, self._waiting = self._waiting, []
            for waiting in [*batch, *left]:
                _settle(waiting.kept, error=_own_copy(exc))
            return
        except BaseException:  # the process stopping: nobody is answered
            left, self._waiting = self._waiting, []
            for waiting in [*batch, *left]:
                waiting.kept.cancel()
            raise
        kept = {row["dedupe_key"]: row["id"] for row in rows}
        for waiting in batch:  # the first delivery of a key, in arrival order, kept it
            _settle(waiting.kept, result=kept.pop(waiting.delivery.key, None))


_batchers: weakref.WeakKeyDictionary[HotPath, IntakeBatcher] = weakref.WeakKeyDictionary()


def batcher_for(hot_path: HotPath) -> IntakeBatcher:
    batcher = _batchers.get(hot_path)
    if batcher is None:
        batcher = _batchers[hot_path] = IntakeBatcher(hot_path)
    return batcher


def _own_copy(exc: Exception) -> Exception:
    """Each request raises an outage of its own: one exception raised in many tasks would
    gather all their tracebacks."""
    if isinstance(exc, HotPathDown):
        copy = HotPathDown(*exc.args)
        copy.__cause__ = exc.__cause__
        return copy
    return exc


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():  # cancelled above, or settled already: never raise here
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def keep_statement(deliveries: list[Delivery]) -> tuple[Any, ...]:
    """The intake's statement for `deliveries` and its arguments, in asyncpg's form."""
    statement, params = statement_and_job_params()
    sql, args = positional(
        statement,
        {
            **params,
            "provider": PROVIDER,
            "events": [d.event for d in deliveries],
            "keys": [d.key for d in deliveries],
            "tests": [d.test for d in deliveries],
            "bodies": [d.body for d in deliveries],
            "raws": [d.raw for d in deliveries],
            "errors": [d.error for d in deliveries],
            "origins": [d.origin for d in deliveries],
        },
    )
    return (sql, *args)


@functools.cache
def statement_and_job_params() -> tuple[str, dict[str, Any]]:
    # Made once: the task's queue and priority do not change while the process runs, and the
    # one string object keeps its hash for positional()'s cache at every batch.
    defer, params = queue.defer_in_statement(
        HANDLE_TASK, "jsonb_build_object('inbox_id', kept.id::text) || first.origin::jsonb"
    )
    return _KEEP.format(defer=defer), params
