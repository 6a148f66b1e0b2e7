"""Probe tasks for the queue tests, registered on the real queue app.

Shared by the test process and the worker subprocess (queue_worker.py).
"""

import asyncio

from refit import resources
from refit.queue import exponential_retry, queue


@queue.task(name="tests.record_run")
async def record_run(marker: str, hang_first: bool = False) -> None:
    """Counts its runs in Redis; with hang_first, the first run announces itself and hangs
    (so a test can kill the worker in the middle of it)."""
    res = resources.current()
    runs = await res.redis.incr(res.redis_key("probe", marker, "runs"))
    if hang_first and runs == 1:
        await res.redis.set(res.redis_key("probe", marker, "started"), "1")
        await asyncio.sleep(3600)


@queue.task(name="tests.always_fails", retry=exponential_retry(attempts=2, base_seconds=0))
async def always_fails(reason: str) -> None:
    raise RuntimeError(f"carrier said no: {reason}")
