"""The per-seller limit's hits batched per turn of the event loop (refit/script_batch.py):
each counted as alone, and a script Redis forgot is loaded again."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from refit import ratelimit
from refit.errors import RateLimited


async def _hits(resources, limit: str, key: str, n: int) -> list[bool]:
    async def one() -> bool:
        try:
            await ratelimit.hit(resources, limit, "batch", key)
        except RateLimited:
            return False
        return True

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def test_hits_sent_together_count_one_each(resources):
    key = uuid.uuid4().hex
    answers = await _hits(resources, "7/minute", key, 8)
    assert answers.count(True) == 7 and answers[-1] is False  # in the order asked
    with pytest.raises(RateLimited) as refused:
        await ratelimit.hit(resources, "7/minute", "batch", key)
    assert refused.value.headers["RateLimit-Remaining"] == "0"


async def test_a_script_redis_forgot_is_loaded_again(resources):
    key = uuid.uuid4().hex
    assert await _hits(resources, "3/minute", key, 2) == [True, True]
    # As after a restart or SCRIPT FLUSH (not sent: the Redis may be shared): NOSCRIPT.
    ratelimit._batches[resources.redis].sha = "0" * 40
    assert await _hits(resources, "3/minute", key, 2) == [True, False]


async def test_a_kept_connection_redis_closed_is_replaced_without_an_error(resources):
    """The batch keeps one connection between batches: closed by Redis while it waited (a
    restart, a proxy's idle timeout), it is found stale before the next batch goes out and
    opened again: each hit counted once, nobody told of it."""
    key = uuid.uuid4().hex
    assert await _hits(resources, "4/minute", key, 2) == [True, True]
    batch = ratelimit._batches[resources.redis]
    killed = await _client_id(batch)
    assert await resources.redis.client_kill_filter(_id=killed) == 1
    # Redis closes a killed client after it answers the kill: the end of its stream reaches
    # this loop a moment later (a restart's would long have).
    kept = batch.connection
    for _ in range(200):
        if await kept.can_read():  # the pool's own check: the end of the stream seen
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the kept connection never saw Redis close it")
    assert await _hits(resources, "4/minute", key, 3) == [True, True, False]
    assert await _client_id(batch) != killed  # a new connection on Redis's side


async def _client_id(batch) -> int:
    kept = batch.connection
    assert kept is not None
    await kept.send_command("CLIENT", "ID")
    found: int = await kept.read_response()
    return found
