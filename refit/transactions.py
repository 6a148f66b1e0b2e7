"""The three doors to the database: every transaction the service runs comes through one.

1. `seller_transaction(user_id)`: in the seller's role, under Row Level Security (another
   seller's rows do not exist in it). A seller's request gets it as `UserSessionDep`.
2. `service_transaction()`: as the service, no RLS: operators' requests (`SessionDep`), jobs
   (`job=True`: no statement timeout, as purges and sweeps grow with the data), commands (on
   the command's own short-lived engine: `command_transaction`), and the sandbox carrier.
3. `fetch_as_user(...)`: the hot read, one round trip, in the seller's role (refit.db).

Each commits when its block ends and rolls back when it raises. Nothing else calls a
sessionmaker: a new kind of transaction is a new door here, not a call elsewhere."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from refit import db, resources
from refit.db import fetch_as_user

__all__ = [
    "command_transaction",
    "fetch_as_user",
    "seller_transaction",
    "service_transaction",
]

_T = TypeVar("_T")


@asynccontextmanager
async def service_transaction(
    *, job: bool = False, sessionmaker: async_sessionmaker[AsyncSession] | None = None
) -> AsyncIterator[AsyncSession]:
    """One transaction as the service. `job`: a job's (no statement timeout). `sessionmaker`:
    another engine's (a command's, the sandbox carrier's) instead of this process's."""
    make = sessionmaker or resources.current().sessionmaker
    async with make(**({"info": db.JOB_INFO} if job else {})) as session, session.begin():
        yield session


@asynccontextmanager
async def seller_transaction(user_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
    """One transaction in the seller's role, under RLS: for the few endpoints that must call a
    carrier between two transactions instead of holding one open across the call."""
    async with service_transaction() as session:
        await db.act_as_user(session, user_id)
        yield session


async def command_transaction(
    database_url: str, work: Callable[[AsyncSession], Awaitable[_T]]
) -> _T:
    """`work` in one service transaction on a short-lived engine of its own: for commands
    (`refit operator`, `refit flags`) that run once and exit."""
    engine = db.create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with service_transaction(sessionmaker=db.create_sessionmaker(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()
