"""The revocation watch's own life: each app's lifespan stops the watch it started (a watch
left running went on reconnecting and reloading for the rest of the process, through
whichever engine was current: a later test's "no statement" check saw its reload), and a
live watch that loses Redis says so once, then follows again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from refit.app import create_app
from refit.auth import revocations
from tests.resilience.pg_proxy import CuttableProxy


class Said:
    """Stands in for the module's structlog logger: the events it was told, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __getattr__(self, _level: str) -> Callable[..., None]:
        def record(event: str, **_fields: Any) -> None:
            self.events.append(event)

        return record


async def _until(what: str, check: Callable[[], object], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not {what} in {seconds} s"
        await asyncio.sleep(0.02)


def _running_watches() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name() == "auth.revocation_watch" and not task.done()
    ]


async def test_two_apps_in_one_process_each_stop_their_own_watch(resources, settings):
    first = create_app(settings, resources=resources)
    second = create_app(settings, resources=resources)
    async with first.router.lifespan_context(first):
        older = revocations.current_watch()
        async with second.router.lifespan_context(second):
            newer = revocations.current_watch()
            assert older is not None and newer is not None and newer is not older
            assert len(_running_watches()) == 2
        # The app still serving is checked by its own watch again.
        assert revocations.current_watch() is older
        assert len(_running_watches()) == 1
    assert revocations.current_watch() is None
    assert _running_watches() == []


async def test_a_lost_subscription_is_said_once_and_followed_again(
    resources, settings, monkeypatch
):
    proxy = await CuttableProxy.for_redis(settings.redis_url).start()
    redis = Redis.from_url(proxy.redis_url(settings.redis_url), decode_responses=True)
    said = Said()
    monkeypatch.setattr(revocations, "log", said)
    watch = await revocations.start_watch(redis, resources.engine, settings)
    try:
        await _until("live", lambda: watch.live)
        proxy.cut()
        await _until("lost", lambda: not watch.live)
        # Refused again and again while Redis is away: each try is not news.
        tried = proxy.accepted
        await _until("retrying", lambda: proxy.accepted >= tried + 3)
        assert watch.revoked(uuid.uuid4().hex) is None  # requests ask Redis meanwhile
        proxy.restore()
        await _until("live again", lambda: watch.live)
        assert said.events == [
            "auth.revocation_watch_live",
            "auth.revocation_watch_lost",
            "auth.revocation_watch_live",
        ]
        # And it follows: a revocation published now is known in-process.
        jti = uuid.uuid4().hex
        await resources.redis.publish(revocations.channel(settings), f"{jti} {time.time() + 60}")
        await _until("told", lambda: watch.revoked(jti) is True)
    finally:
        await revocations.stop_watch(watch)
        await redis.aclose()
        await proxy.stop()
    assert _running_watches() == []
