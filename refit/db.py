"""Engine, sessions and the per-request transaction.

One transaction per request or job, committed in one place: `request_session` (FastAPI
dependency) and `job_session` (queue jobs). Services `flush()`, never `commit()`.

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
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

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


async def act_as_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Switch the rest of this transaction to the `authenticated` role with the user's claims."""
    claims = json.dumps({"sub": str(user_id), "role": USER_ROLE})
    await session.execute(text(f"SET LOCAL ROLE {USER_ROLE}"))
    await session.execute(
        text("SELECT set_config('request.jwt.claims', :claims, true)"), {"claims": claims}
    )
    session.info["user_id"] = user_id


@asynccontextmanager
async def as_service(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Briefly leave the user's role inside a user transaction (e.g. to write the job queue).

    Only for system tables the user must never touch directly; user rows stay under RLS.
    """
    user_id = session.info.get("user_id")
    if user_id is None:
        yield session
        return
    await session.execute(text("SET LOCAL ROLE NONE"))
    try:
        yield session
    finally:
        await session.execute(text(f"SET LOCAL ROLE {USER_ROLE}"))


async def raw_connection(session: AsyncSession) -> Any:
    """The psycopg AsyncConnection under the session's current transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one transaction: committed when the endpoint returns, rolled back on error."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.resources.sessionmaker
    async with sessionmaker() as session, session.begin():
        yield session


# scope="function": the commit happens before the response is sent, so a response never
# reports a change that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]
