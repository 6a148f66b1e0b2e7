"""The hot path's connections (refit.hot_path): a stack of open asyncpg connections, at most
`size`, handed to one statement at a time.

Why not asyncpg's own Pool: per read, its acquire and release (a proxy object, a shielded
task, the release's reset coroutine, an idle timer set and cancelled) cost more CPU than the
query itself, about 60-80 µs against 60-70 measured here; the read is on every seller's
request. What this keeps of it: connections opened when needed and closed after
`idle_seconds` unused; a read finding every connection busy waits, bounded by the caller's
wait; a connection given back broken, or mid-answer, is closed, never handed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import asyncpg

# Handed to a waiter: a connection, or None for "a place came free: open one".
_Handed: TypeAlias = asyncpg.Connection | None
SWEEP_EVERY_SECONDS = 60.0


class ConnectionStack:
    def __init__(
        self, open_one: Callable[[], Awaitable[asyncpg.Connection]], size: int, idle_seconds: float
    ) -> None:
        self._open_one = open_one
        self._size = size
        self._idle_seconds = idle_seconds
        # (connection, when it was given back), the most recent last: reads take the warmest.
        self._idle: list[tuple[asyncpg.Connection, float]] = []
        self._out = 0  # handed to reads, being opened for one, or promised to a waiter
        self._waiters: deque[asyncio.Future[_Handed]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def take(self, wait_seconds: float) -> asyncpg.Connection:
        """A connection of this statement's own until `give_back`. Waits up to `wait_seconds`
        when all are out (TimeoutError)."""
        if self._closed:
            raise _closed_error()
        while self._idle:
            connection, _ = self._idle.pop()
            if not connection.is_closed():
                self._out += 1
                return connection
        if self._out < self._size:
            self._out += 1
            return await self._opened()
        handed = await self._wait(wait_seconds)
        return handed if handed is not None else await self._opened()

    def give_back(self, connection: asyncpg.Connection, *, reusable: bool) -> None:
        """`reusable`: its last answer was read whole (an error reply included). Otherwise it
        is closed: the rest of an answer may still be on its way (a timeout, a cancel)."""
        if not reusable or self._closed or connection.is_closed():
            # Closed at once: a graceful close would wait behind the answer still coming.
            connection.terminate()
            self._hand(None)
            return
        self._hand(connection)

    async def close(self) -> None:
        """Idle connections closed; reads waiting for one refused (InterfaceError); those
        out are closed as they come back."""
        self._closed = True
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(_closed_error())
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            self._close(connection)
        if self._sweep is not None:
            self._sweep.cancel()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _opened(self) -> asyncpg.Connection:
        try:
            return await self._open_one()
        except BaseException:
            self._hand(None)  # the place it held is free again
            raise

    async def _wait(self, wait_seconds: float) -> _Handed:
        handed: asyncio.Future[_Handed] = asyncio.get_running_loop().create_future()
        self._waiters.append(handed)
        try:
            async with asyncio.timeout(wait_seconds):
                return await handed
        except BaseException:
            if not handed.done() or handed.cancelled():
                # Still waiting, or already passed over by _hand (it skips a cancelled one).
                with contextlib.suppress(ValueError):
                    self._waiters.remove(handed)
            elif handed.exception() is None:
                # Handed something in the same turn as the wait ended: passed on, not lost.
                found = handed.result()
                if found is None:
                    self._hand(None)
                else:
                    self.give_back(found, reusable=True)
            raise

    def _hand(self, connection: _Handed) -> None:
        """One place comes back (with its connection, or empty): to the first live waiter,
        who keeps it out, or to the stack."""
        while self._waiters and not self._closed:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._out -= 1
        if connection is not None and self._closed:
            connection.terminate()
        elif connection is not None:
            self._idle.append((connection, time.monotonic()))
            if self._sweep is None:
                loop = asyncio.get_running_loop()
                self._sweep = loop.call_later(SWEEP_EVERY_SECONDS, self._close_idle)

    def _close_idle(self) -> None:
        self._sweep = None
        unused_since = time.monotonic() - self._idle_seconds
        while self._idle and self._idle[0][1] < unused_since:
            connection, _ = self._idle.pop(0)
            self._close(connection)
        if self._idle:
            self._sweep = asyncio.get_running_loop().call_later(
                SWEEP_EVERY_SECONDS, self._close_idle
            )

    def _close(self, connection: asyncpg.Connection) -> None:
        """An idle connection closed gracefully (PostgreSQL hears Terminate), bounded: one
        that does not answer has its socket closed (asyncpg's close does that itself)."""
        if connection.is_closed():
            return
        task = asyncio.get_running_loop().create_task(_close_quietly(connection))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _closed_error() -> asyncpg.InterfaceError:
    return asyncpg.InterfaceError("the hot path's connections are closed")


async def _close_quietly(connection: asyncpg.Connection) -> None:
    try:
        await connection.close(timeout=2)
    except Exception:  # closing: the socket is to go either way
        connection.terminate()
