"""The process's one LISTEN connection, waking the order streams a notification is about.

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

import psycopg
import structlog
from fastapi import FastAPI

from refit.db import libpq_url
from refit.orders.service import ORDER_EVENTS_CHANNEL
from refit.settings import Settings

log = structlog.get_logger(__name__)

# Named in pg_stat_activity, so an operator (or a test) can tell it from pooled connections.
APPLICATION_NAME = "refit-events-listener"
RECONNECT_MAX_SECONDS = 5.0
# A quiet connection is pinged this often: a peer gone without a word shows as an error.
IDLE_SECONDS = 30.0
PING_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 10
STOP_SECONDS = 1.0


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
    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)
        self.live = False
        self._subscribers: dict[uuid.UUID, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None

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

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="events.listener")

    async def stop(self) -> None:
        self.live = False
        if self._task is not None:
            self._task.cancel()
            # Bounded: shutting down must not wait on a connection that does not answer.
            await asyncio.wait({self._task}, timeout=STOP_SECONDS)

    def _wake(self, order_id: uuid.UUID) -> None:
        for subscription in self._subscribers.get(order_id, ()):
            subscription.wake()

    def _wake_all(self) -> None:
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.wake()

    async def _run(self) -> None:
        wait = 0.1
        reported = False  # an outage is logged once, not at every attempt
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.live:  # it was up: a new outage, retried quickly at first
                    self.live = False
                    wait, reported = 0.1, False
                if not reported:
                    log.warning("events.listener_lost", error=repr(exc)[:300])
                    reported = True
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_MAX_SECONDS)

    async def _follow(self) -> None:
        connection = await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            application_name=APPLICATION_NAME,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )
        try:
            await connection.execute(f"LISTEN {ORDER_EVENTS_CHANNEL}")
            self.live = True
            log.info("events.listener_live", subscribed_orders=len(self._subscribers))
            self._wake_all()
            while True:
                async for notify in connection.notifies(timeout=IDLE_SECONDS):
                    self._dispatch(notify.payload)
                # Notifications arriving during the ping are kept by psycopg for the next
                # notifies() call.
                await asyncio.wait_for(connection.execute("SELECT 1"), PING_TIMEOUT_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), STOP_SECONDS)

    def _dispatch(self, payload: str) -> None:
        try:
            order_id = uuid.UUID(json.loads(payload)["order_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("events.bad_notification", payload=payload[:200])
            return
        self._wake(order_id)


def start_listener(app: FastAPI, settings: Settings) -> OrderEventsListener:
    """Start this process's listener and give it to the app's streams (`app.state`). LISTEN
    needs a session of its own: behind a transaction pooler, the direct URL."""
    url = settings.database_direct_url or settings.database_url
    assert url, "URLs resolved before the app starts"
    listener = OrderEventsListener(url)
    listener.start()
    app.state.order_events_listener = listener
    return listener
