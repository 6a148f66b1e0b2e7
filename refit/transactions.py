"""The three doors to the database: every transaction the service runs comes through one.

1. `seller_transaction(user_id)`: in the seller's role, under Row Level Security (another
   seller's rows do not exist in it). A seller's request gets it as `UserSessionDep`
   (refit.auth.deps): the request's transaction, switched to the seller's role.
2. `service_transaction()`: as the service, no RLS: operators' and public requests
   (`SessionDep`), jobs (`job=True`: no statement timeout, as purges and sweeps grow with the
   data), commands (on the command's own short-lived engine: `command_transaction`), and the
   sandbox carrier.
3. `fetch_as_user(...)`: a read in one round trip, in the seller's role; it, and
   `in_one_message` (several statements of a session in one round trip), live in
   refit/one_message.py, beside this module and built on what it defines here. (The hot
   path's three statements, the sellers' order and list and the webhook intake, are each one
   statement in PostgreSQL's own implicit transaction, on asyncpg: refit/hot_path.py.)

Each commits when its block ends and rolls back when it raises; services `flush()`, never
`commit()`. Nothing else calls a sessionmaker: a new kind of transaction is a new door here,
not a call elsewhere.

The role is set as a transaction takes its pooled connection (`_begin_as_user`), with its
statement timeout in the same statement. Sellers run as the database role `authenticated`
with `request.jwt.claims` set, so PostgreSQL's Row Level Security (`auth.uid() = user_id`)
decides what they see, exactly as on Supabase. The service is the connection's own role,
which owns the tables and is not subject to RLS; a seller's request writes as the service
inside `as_service`, after a read under RLS proved the row is the seller's.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from sqlalchemy import Connection, TextClause, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from refit import db, resources

__all__ = [
    "SessionDep",
    "act_as_user",
    "acting_user",
    "as_service",
    "command_transaction",
    "seller_transaction",
    "service_transaction",
]

USER_ROLE = "authenticated"
# `session.info` of a job's transaction: no statement timeout.
_JOB = "job"
_JOB_INFO: Mapping[str, Any] = MappingProxyType({_JOB: True})

_T = TypeVar("_T")


@asynccontextmanager
async def service_transaction(
    *, job: bool = False, sessionmaker: async_sessionmaker[AsyncSession] | None = None
) -> AsyncIterator[AsyncSession]:
    """One transaction as the service. `job`: a job's (no statement timeout). `sessionmaker`:
    another engine's (a command's, the sandbox carrier's) instead of this process's."""
    make = sessionmaker or resources.current().sessionmaker
    async with make(**({"info": _JOB_INFO} if job else {})) as session, session.begin():
        yield session


@asynccontextmanager
async def seller_transaction(user_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
    """One transaction in the seller's role, under RLS: for the few endpoints that must call a
    carrier between two transactions instead of holding one open across the call."""
    async with service_transaction() as session:
        await act_as_user(session, user_id)
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


async def request_session() -> AsyncIterator[AsyncSession]:
    """The request's one transaction: committed when the endpoint returns, rolled back on error.

    The pooled connection is taken at the first statement, not before: an endpoint that calls
    something slow first (a price feed) holds no connection while it waits.
    """
    async with service_transaction() as session:
        yield session


# scope="function": the commit happens before the response is sent, so a response never
# reports a change that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]


# How a transaction begins: the role, claims and statement timeout, in one statement.
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
    timeouts = db.engine_timeouts(connection.get_execution_options())
    if timeouts is None:
        return 0
    bounded = not session.info.get(_JOB)
    raw = connection.connection.driver_connection
    if isinstance(raw, db.BoundedConnection):
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
