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

import datetime as dt
import hashlib
import re
import uuid
import weakref
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import psycopg
import structlog
from psycopg import abc, errors
from psycopg.types.json import Jsonb

log = structlog.get_logger(__name__)

# The statements prepared on each connection (by name): a new connection has none.
_prepared: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], set[str]] = (
    weakref.WeakKeyDictionary()
)
# psycopg's named placeholder (its name in group 1), or its escaped percent sign (none).
PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")

# Errors that mean the connection's copy is gone or stale: prepared again, the read once more.
# (Not there: a `DISCARD ALL`; a changed result type: a migration added a column to `o.*`.)
STALE = (errors.InvalidSqlStatementName, errors.FeatureNotSupported)


def enabled(pg: psycopg.AsyncConnection[Any]) -> bool:
    return pg.prepare_threshold is not None


@lru_cache(maxsize=256)
def forms(query: str, types: tuple[str, ...] = ()) -> tuple[str, str, str]:
    """(name, `PREPARE name AS query` with $n parameters, `EXECUTE name(%(param)s, ...)`):
    the EXECUTE takes the query's own named parameters, bound client-side as before.
    `types`: each parameter's declared type, one per occurrence (`literal_types`), for the
    job statements; none: the reads', each name one parameter typed by the statement."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] is None:
            return "%"
        if types or match[1] not in names:
            # With types, each occurrence its own parameter, as each is its own literal in
            # the text: typed where it stands (`%(x)s::int` and `%(x)s::text` of '007').
            names.append(match[1])
            return f"${len(names)}"
        return f"${names.index(match[1]) + 1}"

    body = PLACEHOLDER.sub(number, query)
    key = query if not types else f"{query}\0{','.join(types)}"
    name = "refit_stmt_" + hashlib.sha256(key.encode()).hexdigest()[:20]
    values = ", ".join(f"%({n})s" for n in names)
    execute = f"EXECUTE {name}({values})" if names else f"EXECUTE {name}"
    declared = f"({', '.join(types)}) " if types else ""
    return name, f"PREPARE {name} {declared}AS {body}", execute


@lru_cache(maxsize=256)
def occurrences(query: str) -> tuple[str, ...]:
    """`query`'s parameter names, once per occurrence, in the order of `forms`' numbers."""
    return tuple(m[1] for m in PLACEHOLDER.finditer(query) if m[1] is not None)


def literal_types(tx: abc.Transformer, query: str, params: Mapping[str, Any]) -> tuple[str, ...]:
    """The type PostgreSQL gives each of `query`'s parameters as psycopg's literal of its value
    (client-side binding, the statement's text), one per occurrence. Declared so,
    a prepared statement answers as its text: `SELECT %(x)s` of 5 is the integer 5, not the
    text '5' PostgreSQL would make of an undeclared parameter there; of False, false."""
    # A name missing from `params` is left to psycopg, which refuses it as it does the text.
    return tuple(_literal_type(tx, params.get(name)) for name in occurrences(query))


def _literal_type(tx: abc.Transformer, value: Any) -> str:
    # The commonest values without composing their literals: a string is quoted without a
    # cast, NULL bare (both typed by the statement), a bool and an int bare constants, and
    # the kinds below quoted with their cast (a Jsonb's literal would dump it a second time).
    if value is None or isinstance(value, str):
        return "unknown"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return _integer_type(value)
    if isinstance(value, dt.datetime):
        return "timestamp" if value.tzinfo is None else "timestamptz"
    for kind, type_name in _CAST_BY_KIND:
        if isinstance(value, kind):
            return type_name
    return type_of_literal(tx.as_literal(value))


# tests/foundation/test_job_messages_prepared.py holds these to psycopg's own literals.
_CAST_BY_KIND: tuple[tuple[type, str], ...] = (
    (uuid.UUID, "uuid"),
    (Jsonb, "jsonb"),
    (dt.date, "date"),
)


def type_of_literal(literal: bytes) -> str:
    """The type PostgreSQL gives a literal psycopg composed (a list's: its items' cast)."""
    literal = literal.strip()
    if cast := _CAST.fullmatch(literal):
        return cast[1].decode()
    if literal.startswith((b"'", b"E'")) or literal == b"NULL":
        return "unknown"
    if literal in (b"true", b"false"):
        return "bool"
    try:
        return _integer_type(int(literal))
    except ValueError:
        return "numeric"  # a bare constant with a point or an exponent (Decimal, float)


def _integer_type(value: int) -> str:
    if -(2**31) <= value < 2**31:
        return "int4"
    return "int8" if -(2**63) <= value < 2**63 else "numeric"


_CAST = re.compile(rb"E?'(?:[^']|'')*'::(.+)", re.DOTALL)


async def ensure(pg: psycopg.AsyncConnection[Any], query: str, types: tuple[str, ...] = ()) -> str:
    """The EXECUTE form of `query`, prepared on this connection first if it is not yet
    (the connection in autocommit, idle)."""
    name, prepare, execute = forms(query, types)
    known = _prepared.setdefault(pg, set())
    if name not in known:
        try:
            await pg.execute(prepare.encode(), prepare=False)
        except errors.DuplicatePreparedStatement:
            pass  # prepared by a call that was cancelled before it could note it
        known.add(name)
    return execute


# What PostgreSQL answers to a PREPARE it refuses as written, whatever the database holds: a
# parameter it cannot type (a function of "any"), a statement PREPARE does not take (SET),
# an operator or function not there for the declared types. Such a statement is sent as text
# from then on. Not these: a table or column missing for now (new code before its migration).
_REFUSED_AS_WRITTEN = (
    errors.IndeterminateDatatype,
    errors.SyntaxError,
    errors.DatatypeMismatch,
    errors.UndefinedFunction,
    errors.AmbiguousFunction,
    errors.AmbiguousParameter,
)
_as_text: set[tuple[str, tuple[str, ...]]] = set()


def execute_form(
    pg: psycopg.AsyncConnection[Any], query: str, types: tuple[str, ...] = ()
) -> str | None:
    """`EXECUTE name(...)` when `query` is prepared on this connection already, else None."""
    name, _, execute = forms(query, types)
    return execute if name in _prepared.get(pg, ()) else None


async def try_prepare(
    pg: psycopg.AsyncConnection[Any], query: str, types: tuple[str, ...] = ()
) -> bool:
    """Prepare `query` on this connection (autocommit, idle: a refusal aborts nothing); False
    when PostgreSQL refuses it, and never tried again in this process when it refuses it as
    written."""
    if (query, types) in _as_text:
        return False
    try:
        await ensure(pg, query, types)
    except _REFUSED_AS_WRITTEN as exc:
        _as_text.add((query, types))
        # Once a statement and process: what runs parsed and planned every time, and why.
        log.info("prepared.sent_as_text", statement=query[:200], types=types, reason=str(exc))
        return False
    except errors.ProgrammingError:
        return False  # a table or column not there yet, say: tried again next time
    return True


async def forget(pg: psycopg.AsyncConnection[Any], query: str, types: tuple[str, ...] = ()) -> None:
    """Drop this connection's copy (stale or gone), so the next `ensure` prepares it again.
    The connection in autocommit, idle."""
    name, _, _ = forms(query, types)
    _prepared.get(pg, set()).discard(name)
    if pg.closed:
        return
    try:
        await pg.execute(f"DEALLOCATE {name}".encode(), prepare=False)
    except errors.InvalidSqlStatementName:
        pass  # gone already
