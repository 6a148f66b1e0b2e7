"""The order events' part of the process's LISTEN connection (refit/listen.py): waking the
order streams a notification is about.

A notification is only a wake-up: the stream re-reads the history rows after the last one it
sent, so a notification lost (the connection down, a reconnect) costs a delay, never an event,
and one delivered twice costs a read, never a duplicate. After every (re)connect all streams
are woken, which covers whatever committed while nobody was listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import structlog
from fastapi import FastAPI

from refit.listen import Listener
from refit.orders.service import ORDER_EVENTS_CHANNEL

log = structlog.get_logger(__name__)


class Subscription:
    """One stream's doorbell: set by the listener, cleared by the stream before it re-reads,
    so a ring during the read is not lost."""

    def __init__(self) -> None:
        self._rung = asyncio.Event()

    def wake(self) -> None:
        self._rung.set()

    async def wait(self, seconds: float) -> bool:
        """True when woken within `seconds`."""
        try:
            await asyncio.wait_for(self._rung.wait(), max(seconds, 0))
        except TimeoutError:
            return False
        self._rung.clear()
        return True


class OrderEventsListener:
    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._subscribers: dict[uuid.UUID, set[Subscription]] = {}
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
