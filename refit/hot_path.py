"""The hot path's statements on asyncpg, on connections of their own: the seller's order and
order list (one prepared statement each, a function that switches to the seller's role and
claims and reads under RLS: migration 0029) and the carrier webhook intake (one statement
that keeps the inbox row and queues its job, as the service).

Why a second driver for three statements: per request, psycopg's Python-side protocol work
(client-side binding, its result sets, its wait loop) and SQLAlchemy's pool cost more CPU
than the rest of the request (docs/capacity.md, issue 25); asyncpg speaks the binary
protocol in Cython and answers the same statement for a fraction. Every other statement
stays on the engine (refit.db).

The connections (refit.connection_stack) open when first used, so a process that never serves
these (the worker, a command) never connects. Their own number
(REFIT_DB_SELLER_READ_POOL_SIZE), the engine's connect timeout, statement timeout (asyncpg's
`timeout` cancels the statement on the server and raises), prepared statements only where
REFIT_DB_PREPARED_STATEMENTS allows them (a transaction pooler cannot keep them), and the
application name libpq would give them (PGAPPNAME), so pg_stat_activity tells them apart.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from refit import db
from refit.connection_stack import ConnectionStack
from refit.settings import Settings


class HotPathDown(ConnectionError):
    """PostgreSQL did not answer a hot path statement (down, restarting, a dropped connection, the
    statement timeout): answered 503 like every dependency outage (refit.errors)."""


class HotPath:
    def __init__(self, settings: Settings) -> None:
        assert settings.database_url
        self._dsn = db.libpq_url(settings.database_url)
        timeouts = db.Timeouts.from_settings(settings)
        self._connect_seconds = timeouts.connect_seconds
        # None: no bound of ours (REFIT_DB_STATEMENT_TIMEOUT_MS=0).
        self._statement_seconds = timeouts.statement_ms / 1000 or None
        self._wait_seconds = settings.db_seller_read_wait_seconds
        self._statement_cache = 256 if settings.db_prepared_statements else 0
        # Opened when first used; closed after 5 minutes unused. No reset between uses: our
        # statements leave nothing behind (the functions' settings are local to their own
        # transaction; tests/security/test_attack_seller_reads_pool.py).
        self._connections = ConnectionStack(
            self._open, settings.db_seller_read_pool_size, idle_seconds=300
        )

    @property
    def wait_seconds(self) -> float:
        """How long a statement waits for a connection when all are out."""
        return self._wait_seconds

    async def _open(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_seconds,
            statement_cache_size=self._statement_cache,
            server_settings=_application_name(self._dsn),
        )
        try:
            await _decode_jsonb(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    async def row(self, statement: str, *args: Any) -> asyncpg.Record | None:
        """The first row `statement` answers, or None."""
        found: asyncpg.Record | None = await self._run(statement, args, _first_row)
        return found

    async def fetch(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        """Every row `statement` answers."""
        found: list[asyncpg.Record] = await self._run(statement, args, _every_row)
        return found

    async def write(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        """Every row one writing `statement` answers, as the service, in a transaction of its
        own (one statement: PostgreSQL's implicit one). Sent as `fetch` sends a read: again on
        a fresh connection if the first died as it went out, so it must be one that may run
        twice."""
        return await self.fetch(statement, *args)

    async def _run(self, statement: str, args: tuple[Any, ...], get: _Getter) -> Any:
        """A connection whose socket closed while it idled (a server restart) is dropped
        when taken; one that dies as the statement goes out is tried once more on a fresh one
        (a read may be, and `write` says which writes may)."""
        for attempt in (1, 2):
            try:
                return await self._run_once(statement, args, get)
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

    async def _run_once(self, statement: str, args: tuple[Any, ...], get: _Getter) -> Any:
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


def _application_name(dsn: str) -> dict[str, str] | None:
    """The name libpq gives a connection: the URL's application_name, else PGAPPNAME. asyncpg
    reads the URL's but not PGAPPNAME (and its server_settings would win over the URL's)."""
    if "application_name" in parse_qs(urlsplit(dsn).query):
        return None
    name = os.environ.get("PGAPPNAME")
    return {"application_name": name} if name else None


# PostgreSQL down, restarting, unreachable, or a statement cancelled at its timeout.
_OUTAGES = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.QueryCanceledError,
    asyncpg.CannotConnectNowError,
)


def _down(exc: BaseException) -> HotPathDown:
    return HotPathDown(f"PostgreSQL did not answer: {type(exc).__name__} {exc}")


def positional(statement: str, params: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """A statement written with psycopg's named placeholders (`%(name)s`) in asyncpg's
    numbered ones (`$1`), and its arguments in that order; a name used twice is one number."""
    numbered, names = _numbered(statement)
    return numbered, tuple(params[name] for name in names)


@functools.lru_cache(maxsize=64)
def _numbered(statement: str) -> tuple[str, tuple[str, ...]]:
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match[1], len(numbers) + 1)}"

    return _NAMED.sub(number, statement), tuple(numbers)


_NAMED = re.compile(r"%\((\w+)\)s")

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
