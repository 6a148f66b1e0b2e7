"""Engine, sessions and the per-request transaction.

One transaction per request or job, committed in one place: `resources.request_session`
(FastAPI dependency) and `queue.job_session` (queue jobs). Services `flush()`, never
`commit()`.

User requests run as the database role `authenticated` with `request.jwt.claims` set, so
PostgreSQL's Row Level Security (`auth.uid() = user_id`) decides what they see, exactly as
on Supabase. The worker, public auth endpoints and operators use the connection's own
role (the "service role"), which owns the tables and is not subject to RLS.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection, MetaData, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

USER_ROLE = "authenticated"
POOL_RECYCLE_SECONDS = 300


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


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    prepared_statements: bool = False,
    ping_before_use: bool = True,
) -> AsyncEngine:
    """`ping_before_use=False` for API processes: a ping is a round trip on every request.
    Their connections are recycled before servers and proxies drop idle ones, one that died
    anyway fails its request with a 503 (hot reads retry once), and the pool drops it. A
    process that runs jobs pings: after an outage its first jobs must not fail on a dead
    connection (a job that fails is retried later, or never, as its task says)."""
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=ping_before_use,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args=connect_args(prepared_statements),
    )


def connect_args(prepared_statements: bool) -> dict[str, Any]:
    """psycopg's: statements run more than once on a connection are prepared (parsed and
    planned once), unless a transaction pooler (PgBouncer in transaction mode, Supabase's
    port 6543) sits in between: it cannot keep them, so they are turned off."""
    return {"prepare_threshold": 2 if prepared_statements else None}


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: responses are serialised from them.
    return async_sessionmaker(engine, expire_on_commit=False)


_AS_USER_SQL = (
    "SELECT set_config('role', %(role)s, true), set_config('request.jwt.claims', %(claims)s, true)"
)
_AS_USER = text(_AS_USER_SQL.replace("%(role)s", ":role").replace("%(claims)s", ":claims"))


def _as_user_params(user_id: uuid.UUID) -> dict[str, str]:
    return {"role": USER_ROLE, "claims": json.dumps({"sub": str(user_id), "role": USER_ROLE})}


@event.listens_for(Session, "after_begin")
def _begin_as_user(session: Session, transaction: Any, connection: Connection) -> None:
    # The seller's role is set when the transaction takes its pooled connection, in the same
    # statement sequence: a request that first calls something slow holds no connection.
    if transaction.nested:
        return  # a SAVEPOINT: the role is the enclosing transaction's (maybe as_service's)
    session.info["began"] = True
    user_id = session.info.get("user_id")
    if user_id is not None:
        connection.execute(_AS_USER, _as_user_params(user_id))


async def act_as_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Run this session's transaction in the `authenticated` role with the user's claims.

    One statement: `set_config('role', ..., true)` is `SET LOCAL ROLE`, as PostgREST does it.
    Sent when the transaction takes its connection, or now if it has one already.
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
    exist). A connection that died while idle (API processes do not ping before use) is
    thrown away and the read tried once more on a fresh one.
    """
    for attempt in (1, 2):
        async with engine.connect() as connection:
            pg = (await connection.get_raw_connection()).driver_connection
            assert isinstance(pg, psycopg.AsyncConnection)
            try:
                return await _read_in_one_message(pg, user_id, query, params)
            except psycopg.OperationalError:
                if attempt == 2 or not pg.closed:
                    raise
                await connection.invalidate()
    raise AssertionError("unreachable")


async def _read_in_one_message(
    pg: psycopg.AsyncConnection[Any], user_id: uuid.UUID, query: str, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    # One Query message holds BEGIN, the role and claims, the query and COMMIT: one round trip
    # and the fewest steps on our side. The values are bound client-side, quoted by psycopg
    # (a ClientCursor); in autocommit mode psycopg adds no BEGIN of its own in front.
    await pg.set_autocommit(True)
    try:
        cursor = psycopg.AsyncClientCursor(pg, row_factory=dict_row)
        await cursor.execute(
            f"BEGIN READ ONLY; {_AS_USER_SQL}; {query}; COMMIT",
            {**params, **_as_user_params(user_id)},
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
