"""The process's one LISTEN connection (refit/listen.py): several channels on one session, a
handler per channel, on-connect callbacks after every (re)connect, lent work, a bounded stop;
and an API process holds exactly one such connection."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import text

from refit.listen import APPLICATION_NAME, Listener, ListenerDown
from tests.listen_helpers import listener_pids, one_listener


async def _notify(resources, channel: str, payload: str) -> None:
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
        )


async def _until(what: str, predicate, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def _channels(connection: Any) -> set[str]:
    cursor = await connection.execute("SELECT pg_listening_channels()")
    return {row[0] for row in await cursor.fetchall()}


async def test_one_connection_follows_every_channel_and_heals(resources):
    got: dict[str, list[str]] = {"one": [], "two": []}
    connects: list[set[str]] = []

    async def connected(connection: Any) -> None:
        # Every channel is listened to before any callback reads.
        connects.append(await _channels(connection))

    listener = Listener(resources.settings.database_url)
    listener.listen("one", got["one"].append, on_connect=connected)
    listener.listen("two", got["two"].append)
    with pytest.raises(ListenerDown):
        await listener.run(_channels)
    listener.start()
    try:
        await _until("the listener did not go live", lambda: listener.live)
        assert connects == [{"one", "two"}]
        assert await listener.run(_channels) == {"one", "two"}
        before = await one_listener(resources)

        await _notify(resources, "one", "a")
        await _notify(resources, "two", "b")
        await _notify(resources, "elsewhere", "c")
        await _until("a notification was not handled", lambda: got == {"one": ["a"], "two": ["b"]})

        async with resources.sessionmaker() as session:
            assert await session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        await _until("the callback did not run again", lambda: len(connects) == 2)
        await _until("the listener did not come back", lambda: listener.live)
        assert await one_listener(resources, other_than=before)
        await _notify(resources, "two", "d")
        await _until(
            "a notification after the reconnect was lost", lambda: got["two"][-1:] == ["d"]
        )
    finally:
        started = time.monotonic()
        await listener.stop()
    assert time.monotonic() - started < 2
    assert not listener.live
    deadline = time.monotonic() + 5
    while await listener_pids(resources):
        assert time.monotonic() < deadline, "the connection outlived the stop"
        await asyncio.sleep(0.05)
    with pytest.raises(ListenerDown):
        await listener.run(_channels)


async def test_a_failing_handler_costs_its_notification_only(resources):
    got: list[str] = []

    def handler(payload: str) -> None:
        if payload == "bad":
            raise ValueError(payload)
        got.append(payload)

    listener = Listener(resources.settings.database_url)
    listener.listen("one", handler)
    listener.start()
    try:
        await _until("the listener did not go live", lambda: listener.live)
        pid = await one_listener(resources)
        await _notify(resources, "one", "bad")
        await _notify(resources, "one", "good")
        await _until("the handler's failure stopped the listener", lambda: got == ["good"])
        assert await listener_pids(resources) == [pid]
    finally:
        await listener.stop()


async def test_an_api_process_holds_one_listen_connection_for_events_and_flags(client, resources):
    await one_listener(resources)
    async with resources.sessionmaker() as session:
        names = set(
            await session.scalars(
                text(
                    "SELECT application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'refit-%'"
                )
            )
        )
    assert names == {APPLICATION_NAME}
