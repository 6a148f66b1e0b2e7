"""One Lua script run for many callers at once: the runs asked for while the previous batch
is on its way go to Redis together (one write, one read, one wake-up), not one round trip
each. Each run is still its own script call, atomic on its own, in the order asked: the same
counts as one call each. For the per-seller limit on every signed-in request
(refit.ratelimit): under load its round trip was most of its cost (its syscalls), shared by
several requests here (bench/read_cost.py).

One batch at a time, on one connection the batch keeps (taken from the client's pool, given
back when it fails): redis-py's pipeline object and its per-command connection checkout (a
read of the socket to find stale data, each time) cost more CPU than the round trip itself
(about 240 µs against 165 a call, measured here). A caller waits at most one round trip
more, and under load more runs share each one. A batch is never sent twice (see _exchange).

A caller sees what it would have seen alone: its script's answer, or the error of its own
command (a Redis error reply), or the error that stopped the whole batch (Redis down, a
timeout, the pool exhausted, the connection lost while the batch was out). A script Redis
forgot (restarted, SCRIPT FLUSH) is loaded again and its runs sent once more: a NOSCRIPT
answer means it did not run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

_Run = tuple[str, list[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    def __init__(self, client: Redis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha: str | None = None
        self.pending: list[_Run] = []
        self.sending: asyncio.Task[None] | None = None  # held: the loop keeps weak references
        self.connection: AbstractConnection | None = None

    async def run(self, key: str, args: list[Any]) -> Any:
        """The script's answer for one KEYS[1] and its ARGV."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self.pending.append((key, args, answer))
        if len(self.pending) == 1 and self.sending is None:
            loop.call_soon(self._flush)
        return await answer

    def _flush(self) -> None:
        if self.sending is not None or not self.pending:
            return  # the batch on its way sends these when it is back
        runs, self.pending = self.pending, []
        self.sending = asyncio.get_running_loop().create_task(self._send(runs))
        self.sending.add_done_callback(self._sent)

    def _sent(self, _: asyncio.Task[None]) -> None:
        self.sending = None
        self._flush()

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
        commands = [("EVALSHA", self.sha, 1, key, *args) for key, args, _ in runs]
        return await self._exchange(commands)

    async def _exchange(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Never sent twice: once a batch is out, Redis may have run it, whatever happens to
        the connection after (a run counted twice would refuse a seller early). The kept
        connection is checked before each batch instead (no syscall: what the event loop
        already saw, an end of stream when Redis restarted or a proxy closed it, or bytes
        nobody asked for) and opened again if it went stale. (redis-py's pool skips that
        check with its maintenance notifications on, as they are by default.)"""
        pool = self.client.connection_pool
        if self.connection is None:
            self.connection = await pool.get_connection()
        connection = self.connection
        try:
            await _fresh(connection)
            await connection.send_packed_command(connection.pack_commands(commands))
            results: list[Any] = []
            for _ in commands:
                try:
                    results.append(await connection.read_response())
                except redis.exceptions.ResponseError as error:  # its own command's
                    results.append(error)
        except BaseException:
            # Whatever was not read is still on the socket: the connection goes back
            # closed (the pool opens it again when next asked).
            self.connection = None
            await connection.disconnect()
            await pool.release(connection)
            raise
        return results


async def _fresh(connection: AbstractConnection) -> None:
    try:
        stale = await connection.can_read()
    except redis.exceptions.ConnectionError:  # closed on our side
        stale = True
    if stale:
        await connection.disconnect()
        await connection.connect()
