"""The order events' part of the process's LISTEN connection (refit/listen.py): waking the
order streams a notification is about.

A notification is only a wake-up: the stream re-reads the history rows after the last one it
sent, so a notification lost (the connection down, a reconnect) costs a delay, never an event,
and one delivered twice costs a read, never a duplicate. After every (re)connect all streams
are woken, which covers whatever committed while nobody was listening. The streams a ring
wakes share their re-read where it is the same read (`SharedReads`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Coroutine, Hashable, Iterator
from typing import Any, TypeVar

import psycopg
import structlog
from fastapi import FastAPI

from refit.listen import Listener
from refit.orders.service import ORDER_EVENTS_CHANNEL

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


class Subscription:
    """One stream's doorbell: set by the listener, cleared by the stream before it re-reads,
    so a ring during the read is not lost. `rung` numbers its latest ring among every ring of
    the process (`rings_so_far`), for a shared read to know whether it began after it."""

    _rings = 0

    def __init__(self) -> None:
        self._rung = asyncio.Event()
        self.rung = 0

    def wake(self) -> None:
        Subscription._rings += 1
        self.rung = Subscription._rings
        self._rung.set()

    async def wait(self, seconds: float) -> bool:
        """True when woken within `seconds`."""
        try:
            await asyncio.wait_for(self._rung.wait(), max(seconds, 0))
        except TimeoutError:
            return False
        self._rung.clear()
        return True


def rings_so_far() -> int:
    return Subscription._rings


class SharedReads:
    """One read for the streams woken by the same change instead of one read each.

    A stream asks for its read under a key naming exactly what it would read (the seller it
    was let in for, the order, the last event it sent) and the ring that woke it. It joins a
    read of the same key that is in flight and BEGAN AFTER that ring: the change that rang
    committed before its notification arrived, so a read begun since sees it, and the answer
    is the one the stream's own read would have had. Otherwise (no such read, or one begun
    before the ring, which may miss the change) it begins a new one for the key.

    The read runs in a task of its own: a stream that goes away (its client closed) while
    others wait on it does not cancel it for them."""

    def __init__(self) -> None:
        self._reads: dict[Hashable, tuple[int, asyncio.Future[Any]]] = {}

    async def read(
        self, key: Hashable, rung: int, read: Callable[[], Coroutine[Any, Any, _T]]
    ) -> _T:
        began, future = self._reads.get(key, (-1, None))
        if future is None or began < rung:
            future = asyncio.ensure_future(read())
            entry = (rings_so_far(), future)
            self._reads[key] = entry
            future.add_done_callback(lambda done: self._forget(key, entry))
        result: _T = await asyncio.shield(future)
        return result

    def _forget(self, key: Hashable, entry: tuple[int, asyncio.Future[Any]]) -> None:
        if self._reads.get(key) is entry:
            del self._reads[key]
        future = entry[1]
        if not future.cancelled():
            future.exception()  # retrieved: every stream that waited has its own copy

    def __len__(self) -> int:
        return len(self._reads)


class OrderEventsListener:
    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._subscribers: dict[uuid.UUID, set[Subscription]] = {}
        self.shared_reads = SharedReads()
        listener.listen(ORDER_EVENTS_CHANNEL, self._dispatch, on_connect=self._connected)

    @property
    def live(self) -> bool:
        return self._listener.live

    @contextlib.contextmanager
    def subscribe(self, order_id: uuid.UUID) -> Iterator[Subscription]:
        subscription = Subscription()
        self._subscribers.setdefault(order_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(order_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[order_id]

    def _wake(self, order_id: uuid.UUID) -> None:
        for subscription in self._subscribers.get(order_id, ()):
            subscription.wake()

    def _wake_all(self) -> None:
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.wake()

    async def _connected(self, connection: psycopg.AsyncConnection[Any]) -> None:
        log.info("events.listener_live", subscribed_orders=len(self._subscribers))
        self._wake_all()

    def _dispatch(self, payload: str) -> None:
        try:
            order_id = uuid.UUID(json.loads(payload)["order_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("events.bad_notification", payload=payload[:200])
            return
        self._wake(order_id)


def follow_order_events(app: FastAPI, listener: Listener) -> OrderEventsListener:
    """Follow the order events on the process's listener (registered before it starts) and
    give them to the app's streams (`app.state`)."""
    events = OrderEventsListener(listener)
    app.state.order_events_listener = events
    return events
