"""The seller's hot reads on asyncpg: one prepared statement each (a function that switches to
the seller's role and claims and reads under RLS: migrations 0029), on a pool of its own.

Why a second driver for two reads: per read, psycopg's Python-side protocol work (the
one-message read's client-side binding, its result sets, its wait loop) and SQLAlchemy's
pool cost more CPU than the rest of the request (docs/capacity.md, issue 25); asyncpg speaks
the binary protocol in Cython and answers the same read for a fraction. Everything that
writes, and every other read, stays on the engine (refit.db).

The pool opens its connections when first used, so a process that never serves a seller's
read (the worker, a command) never connects. Its own size (REFIT_DB_SELLER_READ_POOL_SIZE),
the engine's connect timeout, statement timeout (asyncpg's
`timeout` cancels the statement on the server and raises), prepared statements only where
REFIT_DB_PREPARED_STATEMENTS allows them (a transaction pooler cannot keep them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from refit import db
from refit.settings import Settings


class SellerReadsDown(ConnectionError):
    """PostgreSQL did not answer a hot read (down, restarting, a dropped connection, the
    statement timeout): answered 503 like every dependency outage (refit.errors)."""


class SellerReadPool:
    def __init__(self, settings: Settings) -> None:
        assert settings.database_url
        self._dsn = db.libpq_url(settings.database_url)
        timeouts = db.Timeouts.from_settings(settings)
        self._connect_seconds = timeouts.connect_seconds
        # None: no bound of ours (REFIT_DB_STATEMENT_TIMEOUT_MS=0).
        self._statement_seconds = timeouts.statement_ms / 1000 or None
        self._size = settings.db_seller_read_pool_size
        self._wait_seconds = settings.db_seller_read_wait_seconds
        self._statement_cache = 256 if settings.db_prepared_statements else 0
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None
        self._held = 0  # this process's reads holding a connection or waiting for one

    async def _opened(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._size,
                    timeout=self._connect_seconds,
                    statement_cache_size=self._statement_cache,
                    max_inactive_connection_lifetime=300,
                    # asyncpg's default sends RESET ALL, UNLISTEN and friends on every
                    # release: a round trip a read. Our statements leave nothing behind (the
                    # functions' settings are local to their own transaction).
                    reset=_nothing_to_reset,
                    init=_decode_jsonb,
                )
        return self._pool

    async def row(self, statement: str, *args: Any) -> asyncpg.Record | None:
        """The first row `statement` answers, or None."""
        found: asyncpg.Record | None = await self._read(statement, args, _first_row)
        return found

    async def fetch(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        """Every row `statement` answers."""
        found: list[asyncpg.Record] = await self._read(statement, args, _every_row)
        return found

    async def _read(self, statement: str, args: tuple[Any, ...], get: _Getter) -> Any:
        """asyncpg drops a pooled connection whose socket closed while it idled (a server
        restart); one that dies as the read goes out is tried once more on a fresh one (a
        read may be)."""
        for attempt in (1, 2):
            try:
                return await self._read_once(statement, args, get)
            except (asyncpg.ConnectionDoesNotExistError, ConnectionResetError) as exc:
                if attempt == 2:
                    raise _down(exc) from exc
            except asyncpg.InvalidSQLStatementNameError:
                # The connection's prepared statements are gone (a DISCARD ALL, a pooler
                # that swapped the server connection): forgotten, and prepared again.
                if attempt == 2:
                    raise
            except _OUTAGES as exc:
                raise _down(exc) from exc
        raise AssertionError("unreachable")

    async def _read_once(self, statement: str, args: tuple[Any, ...], get: _Getter) -> Any:
        pool = await self._opened()
        # Reads that have a place or wait for one (no await between the test and the count):
        # below the pool's size, a free connection is there for this read too.
        free = self._held < self._size
        self._held += 1
        try:
            if free:
                # acquire waits for no other read (a connection it opens is bounded by the
                # connect timeout), so no timer is armed for it.
                connection = await pool.acquire()
            else:
                # asyncio.timeout, not acquire's own `timeout`: that one runs the wait as a
                # task of its own (asyncpg's wait_for).
                async with asyncio.timeout(self._wait_seconds):
                    connection = await pool.acquire()
            return await self._on(pool, connection, statement, args, get)
        finally:
            self._held -= 1

    async def _on(
        self,
        pool: asyncpg.Pool,
        connection: asyncpg.pool.PoolConnectionProxy,
        statement: str,
        args: tuple[Any, ...],
        get: _Getter,
    ) -> Any:
        try:
            # Past the statement timeout asyncpg asks the server to cancel the statement (as
            # the server's own statement_timeout would) and gives up on it.
            found = await get(connection, statement, args, self._statement_seconds)
        except asyncpg.InvalidSQLStatementNameError:
            await connection.reload_schema_state()  # empties its statement cache
            await pool.release(connection)
            raise
        except BaseException:
            # A cancel the server never confirms (it stopped answering) is waited for this
            # long, then the connection is closed instead of given back.
            await pool.release(connection, timeout=db.ANSWER_GRACE_SECONDS)
            raise
        await pool.release(connection)
        return found

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


# PostgreSQL down, restarting, unreachable, or a statement cancelled at its timeout.
_OUTAGES = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.QueryCanceledError,
    asyncpg.CannotConnectNowError,
)


def _down(exc: BaseException) -> SellerReadsDown:
    return SellerReadsDown(f"PostgreSQL did not answer a seller's read: {type(exc).__name__} {exc}")


_Getter = Callable[[asyncpg.Connection, str, tuple[Any, ...], float | None], Awaitable[Any]]


async def _first_row(
    connection: asyncpg.Connection, statement: str, args: tuple[Any, ...], within: float | None
) -> Any:
    return await connection.fetchrow(statement, *args, timeout=within)


async def _every_row(
    connection: asyncpg.Connection, statement: str, args: tuple[Any, ...], within: float | None
) -> Any:
    return await connection.fetch(statement, *args, timeout=within)


async def _decode_jsonb(connection: asyncpg.Connection) -> None:
    # jsonb as Python values (device_details), as psycopg gave them.
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    return None
