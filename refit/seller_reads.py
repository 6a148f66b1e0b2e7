"""The seller's hot reads on asyncpg: one prepared statement each (a function that switches to
the seller's role and claims and reads under RLS: migrations 0029), on connections of their
own.

Why a second driver for two reads: per read, psycopg's Python-side protocol work (the
one-message read's client-side binding, its result sets, its wait loop) and SQLAlchemy's
pool cost more CPU than the rest of the request (docs/capacity.md, issue 25); asyncpg speaks
the binary protocol in Cython and answers the same read for a fraction. Everything that
writes, and every other read, stays on the engine (refit.db).

The connections (refit.connection_stack) open when first used, so a process that never serves
a seller's read (the worker, a command) never connects. Their own number
(REFIT_DB_SELLER_READ_POOL_SIZE), the engine's connect timeout, statement timeout (asyncpg's
`timeout` cancels the statement on the server and raises), prepared statements only where
REFIT_DB_PREPARED_STATEMENTS allows them (a transaction pooler cannot keep them).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from refit import db
from refit.connection_stack import ConnectionStack
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
        self._wait_seconds = settings.db_seller_read_wait_seconds
        self._statement_cache = 256 if settings.db_prepared_statements else 0
        # Opened when first used; closed after 5 minutes unused. No reset between reads: our
        # statements leave nothing behind (the functions' settings are local to their own
        # transaction; tests/security/test_attack_seller_reads_pool.py).
        self._connections = ConnectionStack(
            self._open, settings.db_seller_read_pool_size, idle_seconds=300
        )

    async def _open(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(
            self._dsn, timeout=self._connect_seconds, statement_cache_size=self._statement_cache
        )
        try:
            await _decode_jsonb(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    async def row(self, statement: str, *args: Any) -> asyncpg.Record | None:
        """The first row `statement` answers, or None."""
        found: asyncpg.Record | None = await self._read(statement, args, _first_row)
        return found

    async def fetch(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        """Every row `statement` answers."""
        found: list[asyncpg.Record] = await self._read(statement, args, _every_row)
        return found

    async def _read(self, statement: str, args: tuple[Any, ...], get: _Getter) -> Any:
        """A connection whose socket closed while it idled (a server restart) is dropped
        when taken; one that dies as the read goes out is tried once more on a fresh one (a
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
        connection = await self._connections.take(self._wait_seconds)
        try:
            # Past the statement timeout asyncpg asks the server to cancel the statement (as
            # the server's own statement_timeout would) and gives up on it.
            found = await get(connection, statement, args, self._statement_seconds)
        except asyncpg.InvalidSQLStatementNameError:
            await connection.reload_schema_state()  # empties its statement cache
            self._connections.give_back(connection, reusable=True)
            raise
        except asyncpg.PostgresError:
            # An error answer, read whole (ReadyForQuery came after it): the connection is
            # as good as before. Not so a cancel at our timeout (TimeoutError, below).
            self._connections.give_back(connection, reusable=True)
            raise
        except BaseException:
            # A timeout, a cancel, a broken socket: the rest of the answer may still come.
            self._connections.give_back(connection, reusable=False)
            raise
        self._connections.give_back(connection, reusable=True)
        return found

    async def close(self) -> None:
        await self._connections.close()


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
