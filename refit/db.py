"""The engine: URLs, connection timeouts, the connection class that bounds a wait for an
answer, the session factory, and `Base` for the models.

Transactions are drawn from it in one place, `refit.transactions` (the seller's role under
Row Level Security, or the service's; each transaction's statement timeout).

A PostgreSQL that stops answering costs a bounded wait (`Timeouts`): connecting gives up,
quiet connections are probed, and a request's statements are cancelled by the server or, when
the server does not answer at all, given up by us. Each is a 503, never a hung request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg import pq, waiting
from psycopg.abc import PQGen
from sqlalchemy import MetaData, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from refit.settings import Settings, get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

POOL_RECYCLE_SECONDS = 300
# How much longer than its statement timeout a request waits for PostgreSQL's answer before
# it gives the connection up: the server's own cancellation, answered, comes well within it.
ANSWER_GRACE_SECONDS = 2.0
# The engine's execution option carrying its `Timeouts` (`engine_timeouts`).
_TIMEOUTS = "refit_timeouts"
# A pooled connection that answered this recently is used without a ping first: a process
# that pings (a worker) pays the round trip only after a pause, as after an outage (its
# connections then sat idle at least as long as the outage), never once per transaction of a
# busy queue. One that died within the second fails its job, which is retried.
PING_AFTER_IDLE_SECONDS = 1.0


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def sqlalchemy_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (as Supabase shows them) and use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """The same URL for psycopg itself (procrastinate's pool, psql)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """How long PostgreSQL may keep a connection waiting (the REFIT_DB_* settings)."""

    connect_seconds: int
    keepalives_idle_seconds: int
    keepalives_interval_seconds: int
    keepalives_count: int
    # Each statement of a transaction on the process's engine but a job's; 0: the server's
    # own setting, and no bound of ours.
    statement_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        return cls(
            connect_seconds=settings.db_connect_timeout_seconds,
            keepalives_idle_seconds=settings.db_keepalives_idle_seconds,
            keepalives_interval_seconds=settings.db_keepalives_interval_seconds,
            keepalives_count=settings.db_keepalives_count,
            statement_ms=settings.db_statement_timeout_ms,
        )

    def libpq(self) -> dict[str, Any]:
        """Connection parameters for every connection we open (libpq ignores the TCP ones on
        a unix socket)."""
        probing = self.keepalives_interval_seconds * self.keepalives_count
        return {
            "connect_timeout": self.connect_seconds,
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle_seconds,
            "keepalives_interval": self.keepalives_interval_seconds,
            "keepalives_count": self.keepalives_count,
            # Keepalives probe an idle connection only: a statement sent to a host that has
            # gone waits on TCP's retransmissions (15 minutes on Linux) unless this bounds
            # them; the same length as the probing, so either way a dead peer costs as long.
            "tcp_user_timeout": (self.keepalives_idle_seconds + probing) * 1000,
        }

    def for_commands(self) -> Timeouts:
        """Without the statement timeout: commands import or reconcile in bulk, migrations
        rewrite tables and build indexes."""
        return dataclasses.replace(self, statement_ms=0)

    @property
    def answer_within(self) -> float | None:
        """How long a statement with the statement timeout waits for any answer: the server
        cancels it at the timeout, so an answer that has not come soon after never will."""
        return self.statement_ms / 1000 + ANSWER_GRACE_SECONDS if self.statement_ms else None


class AnswerTimeout(psycopg.OperationalError):
    """PostgreSQL did not answer a statement in time; the connection was closed (a 503)."""


_RV = TypeVar("_RV")


class BoundedConnection(psycopg.AsyncConnection[Any]):
    """psycopg's connection, for a server that stops answering without closing the socket
    (a hung host or pooler: the kernel, or the pooler, acknowledges every byte, so neither
    keepalives nor the TCP user timeout ever fire), in two ways:

    - while `answer_within` is set (the process's engine sets it, a job's transaction
      lifts it), a statement whose answer has not come in that long closes the connection
      and raises `AnswerTimeout`;
    - a caller that gives up on a statement in flight (a cancelled task: a probe's own
      timeout) closes the connection at once, where psycopg first asks the server to cancel
      the statement, over a new connection, and waits up to 10 s for that to happen.

    A wait given its own timeout (psycopg's `notifies(timeout=...)`) keeps it; a LISTEN
    without one is not for a connection with `answer_within` set."""

    answer_within: float | None = None
    # When a pool (the queue's) last took it back: it is pinged before use only after a pause.
    idle_since: float | None = None

    async def wait(
        self,
        gen: PQGen[_RV],
        interval: float = 0.1,
        timeout: float | None = None,  # noqa: ASYNC109 (psycopg's signature)
    ) -> _RV:
        own = timeout is None and self.answer_within is not None
        try:
            return await waiting.wait_async(
                gen,
                self.pgconn.socket,
                interval=interval,
                timeout=self.answer_within if own else timeout,
            )
        except pg_errors._WaitTimeout:  # psycopg's: wait()'s timeout expired
            if not own:
                raise
            self.pgconn.finish()
            raise AnswerTimeout(
                f"PostgreSQL did not answer in {self.answer_within:g} s; connection closed"
            ) from None
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            if self.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
                self.pgconn.finish()  # mid-statement: unusable, and the pool drops it
            raise


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    prepared_statements: bool = False,
    ping_before_use: bool = True,
    timeouts: Timeouts | None = None,
) -> AsyncEngine:
    """`ping_before_use=False` for API processes: a ping is a round trip on every request.
    Their connections are recycled before servers and proxies drop idle ones, one that died
    anyway fails its request with a 503 (hot reads retry once), and the pool drops it. A
    process that runs jobs pings a connection that sat idle (PING_AFTER_IDLE_SECONDS): after
    an outage its first jobs must not fail on a dead connection (a job that fails is retried
    later, or never, as its task says).

    `timeouts`: the process's (`resources.open_resources`); when not given (commands,
    migrations), the settings' without the statement timeout."""
    timeouts = timeouts or Timeouts.from_settings(get_settings()).for_commands()
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args={
            **connect_args(prepared_statements, timeouts),
            "async_creator_fn": _connector(timeouts.answer_within),
        },
        execution_options={_TIMEOUTS: timeouts},
    )
    if ping_before_use:
        _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """SQLAlchemy's pre-ping (the dialect's own ping), for a connection idle for
    PING_AFTER_IDLE_SECONDS or more. A failed ping is a DisconnectionError: the pool throws
    the connection away and checks out another, as pool_pre_ping does."""
    dialect = engine.dialect

    def stamp(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        # A new connection has no stamp: it just answered its connect.
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or not _idle_long(idle_since):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa_exc.DisconnectionError(str(exc)) from exc

    event.listen(engine.sync_engine, "checkin", stamp)
    event.listen(engine.sync_engine, "checkout", ping)


def psycopg_pool_pinging_when_idle(**pool_args: Any) -> psycopg_pool.AsyncConnectionPool:
    """psycopg's pool (the queue's: procrastinate's `pool_factory`), whose check (a ping at
    every checkout) runs only on a connection idle for PING_AFTER_IDLE_SECONDS or more, as the
    engine's pre-ping above does."""

    async def stamp(connection: BoundedConnection) -> None:
        connection.idle_since = time.monotonic()

    async def check(connection: BoundedConnection) -> None:
        idle_since = connection.idle_since
        if idle_since is not None and not _idle_long(idle_since):
            return
        await psycopg_pool.AsyncConnectionPool.check_connection(connection)

    return psycopg_pool.AsyncConnectionPool(**{**pool_args, "check": check, "reset": stamp})


def _idle_long(idle_since: float) -> bool:
    return time.monotonic() - idle_since >= PING_AFTER_IDLE_SECONDS


async def autocommit(connection: psycopg.AsyncConnection[Any]) -> None:
    """A pool's `configure`: each statement its own transaction (the queue's pool)."""
    await connection.set_autocommit(True)


def engine_timeouts(options: Mapping[str, Any]) -> Timeouts | None:
    """The `Timeouts` an engine (or a connection of it) was made with, from its execution
    options; None for an engine not made by `create_engine`."""
    timeouts: Timeouts | None = options.get(_TIMEOUTS)
    return timeouts


def _connector(answer_within: float | None) -> Callable[..., Awaitable[BoundedConnection]]:
    async def connect(*args: Any, **kwargs: Any) -> BoundedConnection:
        connection = await BoundedConnection.connect(*args, **kwargs)
        # Bounded from the start: probes and hot reads use a connection outside any session.
        connection.answer_within = answer_within
        return connection

    return connect


def connect_args(prepared_statements: bool, timeouts: Timeouts) -> dict[str, Any]:
    """psycopg's: statements run more than once on a connection are prepared (parsed and
    planned once), unless a transaction pooler (PgBouncer in transaction mode, Supabase's
    port 6543) sits in between: it cannot keep them, so they are turned off. And the
    connection's timeouts."""
    return {"prepare_threshold": 2 if prepared_statements else None, **timeouts.libpq()}


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: responses are serialised from them.
    return async_sessionmaker(engine, expire_on_commit=False)


async def raw_connection(session: AsyncSession) -> Any:
    """The psycopg AsyncConnection under the session's current transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection
