"""Engine, sessions and the per-request transaction.

One transaction per request or job, committed in one place: `resources.request_session`
(FastAPI dependency) and `queue.job_session` (queue jobs). Services `flush()`, never
`commit()`.

User requests run as the database role `authenticated` with `request.jwt.claims` set, so
PostgreSQL's Row Level Security (`auth.uid() = user_id`) decides what they see, exactly as
on Supabase. The worker, public auth endpoints and operators use the connection's own
role (the "service role"), which owns the tables and is not subject to RLS.

A PostgreSQL that stops answering costs a bounded wait (`Timeouts`): connecting gives up,
quiet connections are probed, and a request's statements are cancelled by the server or, when
the server does not answer at all, given up by us. Each is a 503, never a hung request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq, waiting
from psycopg.abc import PQGen
from psycopg.rows import dict_row
from sqlalchemy import Connection, MetaData, TextClause, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session

from refit.settings import Settings, get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

USER_ROLE = "authenticated"
POOL_RECYCLE_SECONDS = 300
# How much longer than its statement timeout a request waits for PostgreSQL's answer before
# it gives the connection up: the server's own cancellation, answered, comes well within it.
ANSWER_GRACE_SECONDS = 2.0
# The engine's execution option carrying its `Timeouts`.
_TIMEOUTS = "refit_timeouts"
# `session.info` of a job's transaction (`queue.job_session`): no statement timeout.
JOB = "job"
JOB_INFO: Mapping[str, Any] = MappingProxyType({JOB: True})


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
    process that runs jobs pings: after an outage its first jobs must not fail on a dead
    connection (a job that fails is retried later, or never, as its task says).

    `timeouts`: the process's (`resources.open_resources`); when not given (commands,
    migrations), the settings' without the statement timeout."""
    timeouts = timeouts or Timeouts.from_settings(get_settings()).for_commands()
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=ping_before_use,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args={
            **connect_args(prepared_statements, timeouts),
            "async_creator_fn": _connector(timeouts.answer_within),
        },
        execution_options={_TIMEOUTS: timeouts},
    )


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


_AS_USER_SQL = (
    "SELECT set_config('role', %(role)s, true), set_config('request.jwt.claims', %(claims)s, true)"
)
# The statement timeout is set in each transaction (set_config's `true` is SET LOCAL), not as
# a connection option (`options=-c statement_timeout=...`, no round trip either): a
# transaction pooler refuses or ignores startup options (PgBouncer: "unsupported startup
# parameter in options"), and a session-wide SET would stay on a pooled server connection for
# whichever client gets it next, a job among them. It rides in a statement the transaction
# sends anyway where there is one (a seller's role and claims, a hot read's one message).
#
# Every transaction of the process's engine has it (in an API process: its requests, and the
# reads outside a request session) but a job's: a client is waiting on a request, and its
# statements are small by design. Jobs purge and sweep tables whose size grows with the data,
# and are retried when they fail: a bound there would fail the same purge at every retry.
# Migrations rewrite tables and build indexes; commands import or reconcile in bulk: their
# engines have none (`Timeouts.for_commands`). All keep the connect timeout and keepalives.
_TIMEOUT_SQL = "set_config('statement_timeout', %(statement_timeout)s, true)"
_AS_BOUNDED_USER_SQL = f"{_AS_USER_SQL}, {_TIMEOUT_SQL}"


def _sqlalchemy_text(sql: str) -> TextClause:
    return text(re.sub(r"%\((\w+)\)s", r":\1", sql))


_AS_USER = _sqlalchemy_text(_AS_USER_SQL)
_AS_BOUNDED_USER = _sqlalchemy_text(_AS_BOUNDED_USER_SQL)
_BOUNDED = _sqlalchemy_text(f"SELECT {_TIMEOUT_SQL}")


def _as_user_params(user_id: uuid.UUID, statement_ms: int = 0) -> dict[str, str]:
    params = {"role": USER_ROLE, "claims": json.dumps({"sub": str(user_id), "role": USER_ROLE})}
    if statement_ms:
        params["statement_timeout"] = str(statement_ms)
    return params


@event.listens_for(Session, "after_begin")
def _begin_as_user(session: Session, transaction: Any, connection: Connection) -> None:
    # The seller's role is set when the transaction takes its pooled connection, in the same
    # statement sequence: a request that first calls something slow holds no connection.
    if transaction.nested:
        return  # a SAVEPOINT: the role is the enclosing transaction's (maybe as_service's)
    session.info["began"] = True
    statement_ms = _bound_statements(session, connection)
    user_id = session.info.get("user_id")
    if user_id is not None:
        sql = _AS_BOUNDED_USER if statement_ms else _AS_USER
        connection.execute(sql, _as_user_params(user_id, statement_ms))
    elif statement_ms:
        # A service-role transaction (sign-in, operators, webhooks) sends nothing at its
        # start that could carry it: the one round trip this costs.
        connection.execute(_BOUNDED, {"statement_timeout": str(statement_ms)})


def _bound_statements(session: Session, connection: Connection) -> int:
    """This transaction's statement timeout in ms (0: none: a job's, or a command's engine),
    with our own wait for the server's answers on its connection set to match."""
    timeouts = connection.get_execution_options().get(_TIMEOUTS)
    if timeouts is None:
        return 0
    bounded = not session.info.get(JOB)
    raw = connection.connection.driver_connection
    if isinstance(raw, BoundedConnection):
        raw.answer_within = timeouts.answer_within if bounded else None
    return int(timeouts.statement_ms) if bounded else 0


async def act_as_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Run this session's transaction in the `authenticated` role with the user's claims.

    One statement: `set_config('role', ..., true)` is `SET LOCAL ROLE`, as PostgREST does it.
    Sent when the transaction takes its connection, or now if it has one already (its
    statement timeout, a request's, was set when it began).
    """
    session.info["user_id"] = user_id
    if session.info.get("began") and session.in_transaction():
        await session.execute(_AS_USER, _as_user_params(user_id))


def acting_user(session: AsyncSession) -> uuid.UUID | None:
    """The seller whose role this transaction runs in, or None for the service role."""
    return session.info.get("user_id")


@asynccontextmanager
async def as_service(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Write as the service, after a read under the seller's RLS proved the row is theirs.

    Sellers' roles may only read orders, quotes and history (the database guards the one
    door), so a seller's request changes them in here. The seller's own pending changes are
    flushed first under the seller's role, and what changed inside is flushed before the role
    comes back, so nothing crosses the boundary unchecked. A no-op in a service session.
    """
    if acting_user(session) is None or session.info.get("as_service"):
        yield session  # a service session, or already inside as_service
        return
    await session.flush()
    await session.execute(text("SET LOCAL ROLE NONE"))
    session.info["as_service"] = True
    failed = False
    try:
        yield session
        await session.flush()
    except BaseException:
        failed = True
        raise
    finally:
        session.info["as_service"] = False
        try:
            await session.execute(text(f"SET LOCAL ROLE {USER_ROLE}"))
        except SQLAlchemyError:
            # The error in flight already aborted the transaction: it rolls back, and the
            # caller is told about that error, not about this one.
            if not failed:
                raise


async def fetch_as_user(
    engine: AsyncEngine, user_id: uuid.UUID, query: str, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run one read-only `query` in the seller's role, under RLS, in ONE round trip: BEGIN,
    role and claims, the query and COMMIT go out together in one message.

    For hot reads; the same RLS as a `UserSessionDep` session (another seller's rows do not
    exist), and the engine's statement timeout. A connection that died while idle (API
    processes do not ping before use) is thrown away and the read tried once more on a fresh
    one; one that did not answer in time is not tried again (the next would wait as long).
    """
    timeouts: Timeouts | None = engine.get_execution_options().get(_TIMEOUTS)
    statement_ms = timeouts.statement_ms if timeouts else 0
    for attempt in (1, 2):
        async with engine.connect() as connection:
            pg = (await connection.get_raw_connection()).driver_connection
            assert isinstance(pg, psycopg.AsyncConnection)
            if isinstance(pg, BoundedConnection) and timeouts:
                pg.answer_within = timeouts.answer_within  # lifted by a job that used it last
            try:
                return await _read_in_one_message(pg, user_id, query, params, statement_ms)
            except AnswerTimeout:
                raise
            except psycopg.OperationalError:
                if attempt == 2 or not pg.closed:
                    raise
                await connection.invalidate()
    raise AssertionError("unreachable")


async def _read_in_one_message(
    pg: psycopg.AsyncConnection[Any],
    user_id: uuid.UUID,
    query: str,
    params: Mapping[str, Any],
    statement_ms: int,
) -> list[dict[str, Any]]:
    # One Query message holds BEGIN, the role and claims (and the statement timeout), the
    # query and COMMIT: one round trip and the fewest steps on our side. The values are bound
    # client-side, quoted by psycopg (a ClientCursor); in autocommit mode psycopg adds no
    # BEGIN of its own in front.
    await pg.set_autocommit(True)
    try:
        cursor = psycopg.AsyncClientCursor(pg, row_factory=dict_row)
        as_user = _AS_BOUNDED_USER_SQL if statement_ms else _AS_USER_SQL
        await cursor.execute(
            f"BEGIN READ ONLY; {as_user}; {query}; COMMIT",
            {**params, **_as_user_params(user_id, statement_ms)},
        )
        cursor.nextset()  # past BEGIN
        cursor.nextset()  # past the role and claims
        return await cursor.fetchall()
    except psycopg.Error:
        if not pg.closed and pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            await pg.execute("ROLLBACK")
        raise
    finally:
        if not pg.closed:
            await pg.set_autocommit(False)


async def raw_connection(session: AsyncSession) -> Any:
    """The psycopg AsyncConnection under the session's current transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


_T = TypeVar("_T")


async def in_one_transaction(
    database_url: str, work: Callable[[AsyncSession], Awaitable[_T]]
) -> _T:
    """`work` in one service-role transaction on a short-lived engine of its own: for
    commands (`refit operator`, `refit flags`) that run once and exit."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()
