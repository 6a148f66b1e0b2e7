"""One Lua script run for many callers at once: the runs asked for in the same turn of the
event loop go to Redis as one pipeline (one write, one read, one wake-up), not one round trip
each. Each run is still its own script call, atomic on its own, in the order asked: the same
counts as one call each. For the per-seller limit on every signed-in request
(refit.ratelimit): under load its round trip was most of its cost (its syscalls), shared by
several requests here (bench/read_cost.py).

A caller sees what it would have seen alone: its script's answer, or the error of its own
command (a Redis error reply), or the error that stopped the whole pipeline (Redis down, a
timeout, the pool exhausted). A script Redis forgot (restarted, SCRIPT FLUSH) is loaded again
and its runs sent once more.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

_Run = tuple[str, list[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    def __init__(self, client: Redis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha: str | None = None
        self.pending: list[_Run] = []
        self.sending: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references

    async def run(self, key: str, args: list[Any]) -> Any:
        """The script's answer for one KEYS[1] and its ARGV."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self.pending.append((key, args, answer))
        if len(self.pending) == 1:
            loop.call_soon(self._flush)
        return await answer

    def _flush(self) -> None:
        runs, self.pending = self.pending, []
        task = asyncio.get_running_loop().create_task(self._send(runs))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _send(self, runs: list[_Run]) -> None:
        try:
            results = await self._execute(runs)
            forgotten = [
                i for i, r in enumerate(results) if isinstance(r, redis.exceptions.NoScriptError)
            ]
            if forgotten:
                self.sha = None
                again = await self._execute([runs[i] for i in forgotten])
                for i, result in zip(forgotten, again, strict=True):
                    results[i] = result
        except Exception as exc:
            for *_, answer in runs:
                if not answer.done():
                    answer.set_exception(exc)  # each caller gets it, as if alone
            return
        except BaseException:
            for *_, answer in runs:
                answer.cancel()  # the process is stopping
            raise
        for (*_, answer), result in zip(runs, results, strict=True):
            if answer.done():
                continue  # its caller was cancelled
            if isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set_result(result)

    async def _execute(self, runs: list[_Run]) -> list[Any]:
        if self.sha is None:
            self.sha = str(await self.client.script_load(self.source))
        async with self.client.pipeline(transaction=False) as pipe:
            for key, args, _ in runs:
                pipe.evalsha(self.sha, 1, key, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results
