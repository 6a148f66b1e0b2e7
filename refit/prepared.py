"""A hot statement as a server-side prepared statement (SQL `PREPARE`), so its message
carries `EXECUTE name(values)` instead of the statement's text: PostgreSQL stops parsing and
planning it every time. The seller's reads in one message (`one_message.fetch_as_user`: 0.6-0.8
ms of PostgreSQL's CPU a read) and the jobs' transactions in messages (`one_message.job_messages`:
the label job's statements spent 0.85 ms a label being planned, pg_stat_statements) use it.

Only where the engine may keep prepared statements (`REFIT_DB_PREPARED_STATEMENTS`: psycopg's
`prepare_threshold` is set); behind a transaction pooler statements go out as text, as
before. A statement is prepared once per connection, in a round trip of its own, as the
connection's role: PostgreSQL plans it anew for a role other than the one it was analysed
in when the table has Row Level Security (plancache's `dependsOnRLS`), so the seller's
EXECUTE, after `set_config('role', ...)` in the same transaction, is under RLS exactly as the
text was (tests/orders/test_prepared_read.py holds it).
"""

from __future__ import annotations

import hashlib
import re
import weakref
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors

# The statements prepared on each connection (by name): a new connection has none.
_prepared: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], set[str]] = (
    weakref.WeakKeyDictionary()
)
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")

# Errors that mean the connection's copy is gone or stale: prepared again, the read once more.
# (Not there: a `DISCARD ALL`; a changed result type: a migration added a column to `o.*`.)
STALE = (errors.InvalidSqlStatementName, errors.FeatureNotSupported)


def enabled(pg: psycopg.AsyncConnection[Any]) -> bool:
    return pg.prepare_threshold is not None


@lru_cache(maxsize=256)
def forms(query: str) -> tuple[str, str, str]:
    """(name, `PREPARE name AS query` with $n parameters, `EXECUTE name(%(param)s, ...)`):
    the EXECUTE takes the query's own named parameters, bound client-side as before."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] is None:
            return "%"
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    body = _PLACEHOLDER.sub(number, query)
    name = "refit_stmt_" + hashlib.sha256(query.encode()).hexdigest()[:20]
    values = ", ".join(f"%({n})s" for n in names)
    execute = f"EXECUTE {name}({values})" if names else f"EXECUTE {name}"
    return name, f"PREPARE {name} AS {body}", execute


async def ensure(pg: psycopg.AsyncConnection[Any], query: str) -> str:
    """The EXECUTE form of `query`, prepared on this connection first if it is not yet
    (the connection in autocommit, idle)."""
    name, prepare, execute = forms(query)
    known = _prepared.setdefault(pg, set())
    if name not in known:
        try:
            await pg.execute(prepare.encode(), prepare=False)
        except errors.DuplicatePreparedStatement:
            pass  # prepared by a call that was cancelled before it could note it
        known.add(name)
    return execute


# Statements PostgreSQL will not prepare as written: a parameter whose type only its literal
# told (one in an INSERT ... SELECT list is text to PREPARE). Sent as text from then on.
_as_text: set[str] = set()


def execute_form(pg: psycopg.AsyncConnection[Any], query: str) -> str | None:
    """`EXECUTE name(...)` when `query` is prepared on this connection already, else None."""
    name, _, execute = forms(query)
    return execute if name in _prepared.get(pg, ()) else None


async def try_prepare(pg: psycopg.AsyncConnection[Any], query: str) -> bool:
    """Prepare `query` on this connection (autocommit, idle: a refusal aborts nothing); False,
    and never tried again in this process, when PostgreSQL refuses it as written."""
    if query in _as_text:
        return False
    try:
        await ensure(pg, query)
    except errors.ProgrammingError:
        _as_text.add(query)
        return False
    return True


async def forget(pg: psycopg.AsyncConnection[Any], query: str) -> None:
    """Drop this connection's copy (stale or gone), so the next `ensure` prepares it again.
    The connection in autocommit, idle."""
    name, _, _ = forms(query)
    _prepared.get(pg, set()).discard(name)
    if pg.closed:
        return
    try:
        await pg.execute(f"DEALLOCATE {name}".encode(), prepare=False)
    except errors.InvalidSqlStatementName:
        pass  # gone already
