"""One seller's stream of an order's status changes: history rows read in short seller reads
(RLS decides, as for every order read), sent in order, woken by the listener.

No connection or transaction is held while the stream waits: each read is one round trip on a
pooled connection (`one_message.fetch_as_user`), given back at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import psycopg
import sqlalchemy.exc
import structlog
from sse_starlette import ServerSentEvent
from sse_starlette.sse import AppStatus

from refit import one_message
from refit.auth import tokens
from refit.auth.tokens import TokenClaims
from refit.errors import ProblemError
from refit.events.listener import OrderEventsListener, Subscription
from refit.events.schemas import OrderEvent
from refit.log_setup import describe_error
from refit.orders.service import order_not_found
from refit.resources import Resources

log = structlog.get_logger(__name__)

# The order's history rows after the row `after` (all of them when `after` is not one of
# this order's rows), in the order they happened. The order itself is joined so that "not
# yours" (no row at all) differs from "nothing new" (one row of NULLs).
_AFTER = """
SELECT h.id, o.id AS order_id, h.from_status, h.status, h.actor, h.notes, h.created_at
FROM orders o
LEFT JOIN order_status_history seen ON seen.id = %(after)s AND seen.order_id = o.id
LEFT JOIN order_status_history h ON h.order_id = o.id
  AND (seen.id IS NULL OR (h.created_at, h.id) > (seen.created_at, seen.id))
WHERE o.id = %(order_id)s
ORDER BY h.created_at, h.id
"""
# The latest row: the order's current status, first event of a stream with no Last-Event-ID.
_LATEST = """
SELECT h.id, o.id AS order_id, h.from_status, h.status, h.actor, h.notes, h.created_at
FROM orders o
LEFT JOIN order_status_history h ON h.order_id = o.id
WHERE o.id = %(order_id)s
ORDER BY h.created_at DESC, h.id DESC
LIMIT 1
"""

# The database went away under a stream: it ends, and the client resumes with Last-Event-ID.
_DATABASE_DOWN = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    psycopg.OperationalError,
)


async def read_events(
    res: Resources, user_id: uuid.UUID, order_id: uuid.UUID, *, after: uuid.UUID | None
) -> list[OrderEvent]:
    """The order's status changes after the event `after`; with no `after`, the latest one
    only (the current status). 404 when the order is not the seller's."""
    query, params = (_LATEST, {}) if after is None else (_AFTER, {"after": after})
    rows = await one_message.fetch_as_user(
        res.engine, user_id, query, {**params, "order_id": order_id}
    )
    if not rows:
        raise order_not_found(order_id)
    return [OrderEvent.model_validate(row) for row in rows if row["id"] is not None]


async def order_stream(
    res: Resources,
    listener: OrderEventsListener,
    claims: TokenClaims,
    order_id: uuid.UUID,
    first: list[OrderEvent],
    stopping: anyio.Event,
) -> AsyncIterator[ServerSentEvent | bytes]:
    """`first` (read when the request was let in), then each change as it commits, a heartbeat
    comment on a quiet stream, until the session's token expires or is revoked, or the server
    stops (`stopping`, set by sse-starlette: the stream ends cleanly and the client reconnects,
    with Last-Event-ID, to a process that is not stopping)."""
    with listener.subscribe(order_id) as subscription:
        ringer = asyncio.create_task(_wake_when_set(stopping, subscription))
        try:
            for event in first:
                yield event.as_sse()
            # Rung once: what committed between the first read and subscribing is read now.
            subscription.wake()
            last = first[-1].id if first else None
            follow = _follow(res, listener, subscription, claims, order_id, last, stopping)
            async for item in follow:
                yield item
        finally:
            ringer.cancel()


async def _follow(
    res: Resources,
    listener: OrderEventsListener,
    subscription: Subscription,
    claims: TokenClaims,
    order_id: uuid.UUID,
    last: uuid.UUID | None,
    stopping: anyio.Event,
) -> AsyncIterator[ServerSentEvent | bytes]:
    heartbeat = res.settings.sse_heartbeat_seconds
    clock = asyncio.get_running_loop().time
    quiet_since = clock()
    while (left := claims.expires_at - time.time()) > 0 and not stopping.is_set():
        woken = await subscription.wait(min(left, quiet_since + heartbeat - clock()))
        if stopping.is_set() or time.time() >= claims.expires_at:
            return
        try:
            # Signed out meanwhile: the stream goes with the session. In-process while the
            # revocation watch is live, so no round trip.
            await tokens.ensure_not_revoked(res.redis, res.settings, claims)
        except ProblemError as exc:
            log.info("events.stream_refused", code=exc.code)
            return
        if not woken:
            yield ServerSentEvent(comment="heartbeat")
            quiet_since = clock()
            continue
        try:
            events = await _read_shared(res, listener, subscription, claims, order_id, last)
        except ProblemError:
            return  # the order is no longer the seller's to see
        except _DATABASE_DOWN as exc:
            log.warning("events.stream_read_failed", error=describe_error(exc))
            return  # the client resumes with Last-Event-ID
        for event in events:
            yield event.as_sse()
            last = event.id
        if events:
            quiet_since = clock()


async def _read_shared(
    res: Resources,
    listener: OrderEventsListener,
    subscription: Subscription,
    claims: TokenClaims,
    order_id: uuid.UUID,
    last: uuid.UUID | None,
) -> list[OrderEvent]:
    """The events after `last`, read once for every stream of this seller on this order that
    last sent `last` and was woken before the read began (listener.SharedReads): a change
    seen by 1,000 streams is one read, not 1,000. The read is the seller's own, under RLS, and
    the key holds the seller the stream was let in for: a stream only ever gets what its own
    read would have returned."""
    return await listener.shared_reads.read(
        (claims.user_id, order_id, last),
        subscription.rung,
        lambda: read_events(res, claims.user_id, order_id, after=last),
    )


async def _wake_when_set(event: anyio.Event, subscription: Subscription) -> None:
    await event.wait()
    subscription.wake()


def end_streams() -> None:
    """Ask every open stream of this process to end: the server is stopping. uvicorn waits for
    open responses before it stops, and an event stream never ends by itself. sse-starlette
    notices uvicorn's own signal handler (each of `refit api --workers N`'s processes);
    `refit api` and `refit run` handle signals themselves (refit/serving.py) and call this."""
    AppStatus.should_exit = True
