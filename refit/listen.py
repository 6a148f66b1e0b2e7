"""The process's one LISTEN connection: every channel the API process follows, on one session.

LISTEN needs a session of its own (behind a transaction pooler, the direct URL), so each API
process holds exactly one, here, and the domains register what they follow before it starts:
a channel, a handler for its payloads, and a callback run after every (re)connect, once every
channel is listened to (so a change committed meanwhile is either read by the callback or
notified after it, never neither). The domains' handlers are wake-ups (the order streams, the
flag cache), never the only copy of a change: a notification lost while the connection is
down is made up for by the on-connect callbacks.

The connection comes back by itself with backoff and is pinged when quiet, so a peer gone
without a word shows as an error; an outage is logged once. `run()` lends the connection to
short work of its registrants (the flags' re-reads and exposure writes) between waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import sql

from refit.db import BoundedConnection, Timeouts, libpq_url
from refit.log_setup import describe_error
from refit.settings import Settings, get_settings

log = structlog.get_logger(__name__)

# Named in pg_stat_activity, so an operator (or a test) can tell it from pooled connections.
APPLICATION_NAME = "refit-listener"
RECONNECT_MAX_SECONDS = 5.0
# A quiet connection is pinged this often: a peer gone without a word shows as an error.
IDLE_SECONDS = 30.0
PING_TIMEOUT_SECONDS = 10.0
# An on-connect callback or a piece of lent work taking longer than this is a sick connection.
WORK_TIMEOUT_SECONDS = 10.0
STOP_SECONDS = 1.0

T = TypeVar("T")
Connection = psycopg.AsyncConnection[Any]
Handler = Callable[[str], None]
OnConnect = Callable[[Connection], Awaitable[None]]
_Work = tuple[Callable[[Connection], Awaitable[Any]], "asyncio.Future[Any]"]


class ListenerDown(Exception):
    """The connection is not up (starting, reconnecting or stopped): try again later."""


@dataclass(frozen=True)
class _Channel:
    name: str
    handler: Handler
    on_connect: OnConnect | None


class Listener:
    def __init__(
        self,
        url: str,
        application_name: str = APPLICATION_NAME,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.url = libpq_url(url)
        self.application_name = application_name
        # The connect timeout and keepalives (its own pings bound its statements).
        self.timeouts = timeouts or Timeouts.from_settings(get_settings())
        self.live = False
        self._was_live = False
        self._channels: dict[str, _Channel] = {}
        self._work: deque[_Work] = deque()
        self._work_queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> Listener:
        url = settings.database_direct_url or settings.database_url
        assert url, "URLs resolved before the app starts"
        return cls(url, timeouts=Timeouts.from_settings(settings))

    def listen(self, channel: str, handler: Handler, on_connect: OnConnect | None = None) -> None:
        """Follow `channel`: `handler` gets each payload (in the listener's task: it must not
        block); `on_connect(connection)` runs after every (re)connect, before `live`."""
        assert self._task is None, "channels are registered before the listener starts"
        assert channel not in self._channels, f"{channel} is followed once"
        self._channels[channel] = _Channel(channel, handler, on_connect)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="listen")

    async def stop(self) -> None:
        self.live = False
        if self._task is not None:
            self._task.cancel()
            # Bounded: shutting down must not wait on a connection that does not answer.
            await asyncio.wait({self._task}, timeout=STOP_SECONDS)
        self._fail_work()

    async def run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """`work(connection)` on the listening connection, between two waits for
        notifications; ListenerDown at once while the connection is not up."""
        if not self.live:
            raise ListenerDown
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._work.append((work, future))
        self._work_queued.set()
        return await future

    async def _run(self) -> None:
        wait = 0.1
        reported = False  # an outage is logged once, not at every attempt
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._was_live:  # it was up: a new outage, retried quickly at first
                    self._was_live = False
                    wait, reported = 0.1, False
                if not reported:
                    log.warning(
                        "listen.lost", channels=list(self._channels), error=describe_error(exc)
                    )
                    reported = True
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_MAX_SECONDS)

    async def _follow(self) -> None:
        # BoundedConnection: a ping or a piece of work that times out lets go of the
        # connection at once, rather than after psycopg's attempt to cancel it on the server.
        connection = await BoundedConnection.connect(
            self.url,
            autocommit=True,
            application_name=self.application_name,
            **self.timeouts.libpq(),
        )
        try:
            for name in self._channels:
                await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
            for channel in self._channels.values():
                if channel.on_connect is not None:
                    await asyncio.wait_for(channel.on_connect(connection), WORK_TIMEOUT_SECONDS)
            self.live = self._was_live = True
            log.info("listen.live", channels=list(self._channels))
            while True:
                notifies = await self._wait(connection)
                if notifies is None:
                    # Notifications arriving during the ping are kept by psycopg for the next
                    # wait.
                    await asyncio.wait_for(connection.execute("SELECT 1"), PING_TIMEOUT_SECONDS)
                    continue
                for notify in notifies:
                    self._dispatch(notify)
                await self._do_work(connection)
        finally:
            self.live = False
            self._fail_work()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), STOP_SECONDS)

    async def _wait(self, connection: Connection) -> list[psycopg.Notify] | None:
        """The next notifications; [] when work was queued first; None after IDLE_SECONDS of
        quiet."""
        if self._work:
            return []
        self._work_queued.clear()
        receiving = asyncio.create_task(_receive(connection))
        queued = asyncio.create_task(self._work_queued.wait())
        try:
            await asyncio.wait(
                {receiving, queued}, timeout=IDLE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            queued.cancel()
            if not receiving.done():
                # Interrupted while waiting on the socket, before psycopg consumed anything:
                # what arrives later is read by the next wait.
                receiving.cancel()
                await asyncio.wait({receiving})
        if not receiving.cancelled():
            return receiving.result()
        return [] if self._work else None

    def _dispatch(self, notify: psycopg.Notify) -> None:
        channel = self._channels.get(notify.channel)
        if channel is None:
            return
        try:
            channel.handler(notify.payload)
        except Exception:
            log.exception("listen.handler_failed", channel=notify.channel)

    async def _do_work(self, connection: Connection) -> None:
        while self._work:
            work, future = self._work.popleft()
            if future.done():  # its caller gave up
                continue
            try:
                result = await asyncio.wait_for(work(connection), WORK_TIMEOUT_SECONDS)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                if connection.broken or connection.closed or isinstance(exc, TimeoutError):
                    raise
            else:
                if not future.done():
                    future.set_result(result)

    def _fail_work(self) -> None:
        while self._work:
            _, future = self._work.popleft()
            if not future.done():
                future.set_exception(ListenerDown())


async def _receive(connection: Connection) -> list[psycopg.Notify]:
    return [notify async for notify in connection.notifies(stop_after=1)]
