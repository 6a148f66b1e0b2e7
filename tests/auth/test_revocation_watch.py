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
from refit.flags.follower import current_follower
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


def _running(name: str) -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == name and not task.done()]


def _running_watches() -> list[asyncio.Task[Any]]:
    return _running("auth.revocation_watch")


async def test_two_apps_in_one_process_each_stop_their_own_watch(resources, settings):
    """And their own flag follower, kept the same way."""
    first = create_app(settings, resources=resources)
    second = create_app(settings, resources=resources)
    async with first.router.lifespan_context(first):
        older = (revocations.current_watch(), current_follower())
        async with second.router.lifespan_context(second):
            newer = (revocations.current_watch(), current_follower())
            assert None not in older + newer
            assert newer[0] is not older[0] and newer[1] is not older[1]
            assert len(_running_watches()) == len(_running("flags.follower")) == 2
        # The app still serving is checked by its own watch and follower again.
        assert (revocations.current_watch(), current_follower()) == older
        await _until_ended(left=1)
    assert revocations.current_watch() is None and current_follower() is None
    await _until_ended(left=0)


async def _until_ended(left: int) -> None:
    """A stopped task ends within seconds (a cancelled pub/sub read may take its time to let go
    of its connection: `RevocationWatch.stop` does not wait on it), never not at all."""
    await _until(
        f"down to {left} running",
        lambda: len(_running_watches()) == len(_running("flags.follower")) == left,
        seconds=5,
    )


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
    await _until("stopped", lambda: _running_watches() == [], seconds=5)


async def test_a_watch_stopped_while_it_starts_is_over_when_stop_returns(resources, settings):
    """redis-py's subscribe can swallow the cancellation of a stop in the watch's first
    milliseconds and return as if nothing happened; the watch went on following until its
    process ended. Stopped at staggered moments across its start, each one is over."""
    left_running = []
    for moment in range(60):
        watch = await revocations.start_watch(resources.redis, resources.engine, settings)
        await asyncio.sleep(moment * 0.0002)
        await revocations.stop_watch(watch)
        if _running_watches():
            left_running.append(moment)
            await _until("over", lambda: _running_watches() == [], seconds=40)
    assert left_running == []
