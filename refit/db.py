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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

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


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        # Supabase's transaction pooler (pgbouncer) cannot keep prepared statements.
        connect_args={"prepare_threshold": None},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: responses are serialised from them.
    return async_sessionmaker(engine, expire_on_commit=False)


_AS_USER = text(
    "SELECT set_config('role', :role, true), set_config('request.jwt.claims', :claims, true)"
)


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


async def raw_connection(session: AsyncSession) -> Any:
    """The psycopg AsyncConnection under the session's current transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection
