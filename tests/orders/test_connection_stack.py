"""The sellers' read connections (refit/connection_stack.py) on a real PostgreSQL: never more
than its size open, a read that finds them all out waits for the next one given back (and
only as long as it may), a connection given back broken is closed and its place passed on,
and idle ones are closed after their time."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from refit import connection_stack, db
from refit.connection_stack import ConnectionStack


@pytest.fixture
async def stack_of(settings):
    made: list[ConnectionStack] = []
    opened: list[asyncpg.Connection] = []

    def make(size: int, idle_seconds: float = 300) -> ConnectionStack:
        async def open_one() -> asyncpg.Connection:
            connection = await asyncpg.connect(db.libpq_url(settings.database_url))
            opened.append(connection)
            return connection

        stack = ConnectionStack(open_one, size, idle_seconds=idle_seconds)
        stack.opened = opened  # type: ignore[attr-defined]
        made.append(stack)
        return stack

    yield make
    for stack in made:
        await stack.close()
    for connection in opened:
        connection.terminate()


async def test_size_plus_one_reads_at_once_open_size_connections(stack_of):
    stack = stack_of(3)
    release, three_in = asyncio.Event(), asyncio.Event()
    served: list[int] = []

    async def read(i: int) -> None:
        connection = await stack.take(10)
        try:
            served.append(await connection.fetchval("SELECT pg_backend_pid()"))
            if len(served) == 3:
                three_in.set()
            await release.wait()
        finally:
            stack.give_back(connection, reusable=True)

    reads = [asyncio.create_task(read(i)) for i in range(4)]
    await asyncio.wait_for(three_in.wait(), 10)
    await asyncio.sleep(0.1)  # time for a fourth to get in, were the stack to let it
    assert len(stack.opened) == 3 and len(served) == 3  # the fourth waits
    release.set()
    await asyncio.gather(*reads)
    assert len(served) == 4 and len(set(served)) == 3  # handed one of the three
    assert len(stack.opened) == 3


async def test_a_wait_is_bounded_and_leaves_nothing_taken(stack_of):
    stack = stack_of(1)
    held = await stack.take(10)
    with pytest.raises(TimeoutError):
        await stack.take(0.2)
    stack.give_back(held, reusable=True)
    again = await stack.take(0.2)  # the timed-out wait holds no place
    assert again is held
    stack.give_back(again, reusable=True)


async def test_a_broken_connection_is_closed_and_its_place_goes_to_the_waiter(stack_of):
    stack = stack_of(1)
    held = await stack.take(10)
    waiting = asyncio.create_task(stack.take(10))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    stack.give_back(held, reusable=False)
    fresh = await asyncio.wait_for(waiting, 10)
    assert held.is_closed() and fresh is not held
    assert await fresh.fetchval("SELECT 1") == 1
    stack.give_back(fresh, reusable=True)
    assert len(stack.opened) == 2


async def test_a_waiter_cancelled_as_it_is_handed_a_connection_passes_it_on(stack_of):
    stack = stack_of(1)
    held = await stack.take(10)
    first = asyncio.create_task(stack.take(10))
    second = asyncio.create_task(stack.take(10))
    await asyncio.sleep(0.05)
    stack.give_back(held, reusable=True)  # handed to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 10) is held
    stack.give_back(held, reusable=True)


async def test_idle_connections_are_closed_after_their_time(stack_of, monkeypatch):
    monkeypatch.setattr(connection_stack, "SWEEP_EVERY_SECONDS", 0.1)
    stack = stack_of(2, idle_seconds=0.2)
    connection = await stack.take(10)
    stack.give_back(connection, reusable=True)
    for _ in range(100):
        if connection.is_closed():
            break
        await asyncio.sleep(0.05)
    assert connection.is_closed()
    fresh = await stack.take(10)  # a new one is opened when next needed
    assert fresh is not connection and await fresh.fetchval("SELECT 1") == 1
    stack.give_back(fresh, reusable=True)


async def test_after_close_a_read_is_refused(stack_of):
    stack = stack_of(1)
    connection = await stack.take(10)
    stack.give_back(connection, reusable=True)
    await stack.close()
    assert connection.is_closed()
    with pytest.raises(asyncpg.InterfaceError):
        await stack.take(1)
