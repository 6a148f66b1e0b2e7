"""The doors that are one round trip each (refit/transactions.py has the rest, and what they
share): `fetch_as_user`, a read in the seller's role under RLS (the event streams');
`in_one_message`, several statements of a session's own transaction in one message (create
order, idempotency keys);
`job_messages`, a job's transaction as the service sent as a few messages, BEGIN riding with
the first and COMMIT with the last (the label job, the sandbox carrier).
Values are bound client-side, quoted by psycopg; nothing else sends raw multi-statement SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg_pool
from psycopg.adapt import Transformer
from psycopg.rows import dict_row
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from refit import db, prepared, tracing
from refit.transactions import (
    _AS_BOUNDED_USER_SQL,
    _AS_USER_SQL,
    USER_ROLE,
    _as_user_params,
    acting_user,
)

__all__ = [
    "JobMessages",
    "Step",
    "fetch_as_user",
    "in_one_message",
    "job_messages",
]


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
    timeouts = db.engine_timeouts(engine.get_execution_options())
    statement_ms = timeouts.statement_ms if timeouts else 0
    for attempt in (1, 2):
        async with engine.connect() as connection:
            pg = (await connection.get_raw_connection()).driver_connection
            assert isinstance(pg, psycopg.AsyncConnection)
            if isinstance(pg, db.BoundedConnection) and timeouts:
                pg.answer_within = timeouts.answer_within  # lifted by a job that used it last
            try:
                return await _read_in_one_message(pg, user_id, query, params, statement_ms)
            except db.AnswerTimeout:
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
    # BEGIN of its own in front. The query goes as the EXECUTE of a statement prepared on the
    # connection where the engine allows them (refit.prepared): no parsing or planning.
    await pg.set_autocommit(True)
    try:
        text = query
        for attempt in (1, 2):
            if prepared.enabled(pg):
                text = await prepared.ensure(pg, query)
            try:
                return await _send_one_message(pg, user_id, text, params, statement_ms)
            except prepared.STALE:
                if text is query or attempt == 2:
                    raise
                await prepared.forget(pg, query)
        raise AssertionError("unreachable")
    finally:
        if not pg.closed:
            await pg.set_autocommit(False)


async def _send_one_message(
    pg: psycopg.AsyncConnection[Any],
    user_id: uuid.UUID,
    query: str,
    params: Mapping[str, Any],
    statement_ms: int,
) -> list[dict[str, Any]]:
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


@dataclass(frozen=True)
class Step:
    """One statement of `in_one_message` (psycopg's %(name)s placeholders); `as_service`: it
    writes as the service, after the seller's RLS proved the rows are theirs."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)
    as_service: bool = False


def _prefixed(sql: str, index: int) -> str:
    """`sql` with each parameter name prefixed by its step's index (two steps may both say
    %(id)s)."""
    # An escaped percent sign stays as it is: `%%(x)s` is text, no parameter.
    return prepared.PLACEHOLDER.sub(lambda m: f"%(s{index}_{m[1]})s" if m[1] else "%%", sql)


async def in_one_message(session: AsyncSession, *steps: Step) -> list[list[dict[str, Any]]]:
    """The steps, in order, in ONE round trip on the session's own transaction: the rows each
    returned (none for a statement that returns none).

    The role switches `as_service` would make around the service's steps of a seller's
    session go in the same message (and the seller's role comes back at its end), so a write
    costs no round trips of its own beyond the one. The values are bound client-side, quoted
    by psycopg, as in `fetch_as_user`. The session's pending changes are flushed first.
    """
    await session.flush()
    pg = await db.raw_connection(session)
    seller = acting_user(session) is not None and not session.info.get("as_service")
    statements: list[str] = []
    params: dict[str, Any] = {}
    ours: list[bool] = []  # which statements are the caller's (not a role switch)
    as_user = seller

    def switch(to_user: bool) -> None:
        nonlocal as_user
        if seller and as_user != to_user:
            statements.append(f"SET LOCAL ROLE {USER_ROLE if to_user else 'NONE'}")
            ours.append(False)
            as_user = to_user

    for index, step in enumerate(steps):
        switch(not step.as_service)
        # Each step's names are its own: prefixed, so two steps may both say %(id)s.
        statements.append(_prefixed(step.sql, index))
        params.update({f"s{index}_{name}": value for name, value in step.params.items()})
        ours.append(True)
    switch(True)
    cursor = psycopg.AsyncClientCursor(pg, row_factory=dict_row)
    await cursor.execute("; ".join(statements), params)
    results: list[list[dict[str, Any]]] = []
    for index, mine in enumerate(ours):
        if index:
            cursor.nextset()
        if mine:
            results.append(await cursor.fetchall() if cursor.description is not None else [])
    return results


def _joined(steps: Sequence[Step], texts: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """The steps' statements as `texts` (each the step's SQL or its EXECUTE form), each
    step's parameter names prefixed with its index (two steps may both say %(id)s), and their
    parameters."""
    statements: list[str] = []
    params: dict[str, Any] = {}
    for index, (step, text) in enumerate(zip(steps, texts, strict=True)):
        statements.append(_prefixed(text, index))
        params.update({f"s{index}_{name}": value for name, value in step.params.items()})
    return statements, params


class JobMessages:
    """The transaction of `job_messages`: `send` its statements, a message at a time.

    Where the pool keeps prepared statements, each step goes as the EXECUTE of its statement
    prepared on the connection (refit.prepared): one its first message meets is prepared
    before that message's BEGIN; one a later message meets goes as text and is prepared
    after the COMMIT (never a round trip of its own inside the transaction)."""

    def __init__(self, pg: psycopg.AsyncConnection[Any]) -> None:
        self._pg = pg
        self.open = False  # BEGIN sent, COMMIT not yet
        self.done = False
        self._as_text = not prepared.enabled(pg)
        self._literals = Transformer(pg)  # psycopg's, for the types of the values' literals
        # Met inside the transaction, with their parameters' types: prepared after it.
        self.to_prepare: list[tuple[str, tuple[str, ...]]] = []

    async def send(self, *steps: Step, commit: bool = False) -> list[list[dict[str, Any]]]:
        """The steps in one message (the transaction's BEGIN before them if it is the first,
        its COMMIT after them with `commit`): the rows each returned, [] for none."""
        if self.done:
            raise RuntimeError("the transaction has ended")
        first = not self.open
        typed = [self._typed(step) for step in steps]
        texts = await self._texts(typed, first)
        statements, params = _joined(steps, texts)
        if first:
            statements.insert(0, "BEGIN")
            self.open = True
        if commit:
            statements.append("COMMIT")
        cursor = psycopg.AsyncClientCursor(self._pg, row_factory=dict_row)
        sql = "; ".join(statements)
        try:
            with tracing.sql_span(sql):
                await cursor.execute(sql, params)
        except prepared.STALE:
            # A statement changed under a prepared copy (a migration): the copies are dropped,
            # and a first message, the whole transaction so far, is sent again as text.
            stale = [each for each, text in zip(typed, texts, strict=True) if text != each[0]]
            if not stale:
                raise
            await self._pg.execute("ROLLBACK")
            self.open = False
            for query, types in stale:
                await prepared.forget(self._pg, query, types)
            if not first:
                self.done = True
                raise
            self._as_text = True
            return await self.send(*steps, commit=commit)
        if commit:
            self.open, self.done = False, True
        if first:
            cursor.nextset()  # past BEGIN
        results: list[list[dict[str, Any]]] = []
        for index in range(len(steps)):
            if index:
                cursor.nextset()
            results.append(await cursor.fetchall() if cursor.description is not None else [])
        return results

    def _typed(self, step: Step) -> tuple[str, tuple[str, ...]]:
        if self._as_text:
            return step.sql, ()
        return step.sql, prepared.literal_types(self._literals, step.sql, step.params)

    async def _texts(self, typed: Sequence[tuple[str, tuple[str, ...]]], first: bool) -> list[str]:
        if self._as_text:
            return [query for query, _ in typed]
        texts = []
        for query, types in typed:
            text = prepared.execute_form(self._pg, query, types)
            if text is None and first and await prepared.try_prepare(self._pg, query, types):
                text = prepared.execute_form(self._pg, query, types)
            elif text is None and not first:
                self.to_prepare.append((query, types))
            texts.append(text or query)
        return texts

    async def prepare_the_rest(self) -> None:
        """After the COMMIT: prepare what the transaction sent as text, for its next time on
        this connection. Best effort: the transaction's work is done whatever happens here."""
        for query, types in self.to_prepare:
            try:
                await prepared.try_prepare(self._pg, query, types)
            except psycopg.Error:
                return  # the connection's trouble: the pool checks it on its way back


@asynccontextmanager
async def job_messages(pool: psycopg_pool.AsyncConnectionPool) -> AsyncIterator[JobMessages]:
    """One transaction of a job as the service, sent as messages of several statements: BEGIN
    goes with the first, COMMIT with the last one sent with `commit=True` (else one more
    message when the block ends); ROLLBACK when the block raises. For a job's hot path, where
    each message is a decision's worth of statements and the ORM's per-statement cost matters.

    `pool`: the queue's (`queue.job_connections()`): autocommit, so psycopg sends no BEGIN of
    its own, and with no bound on answers, as a job's transactions have none.
    """
    async with pool.connection() as pg:
        if not pg.autocommit:
            raise RuntimeError("job_messages needs a pool of autocommit connections")
        transaction = JobMessages(pg)
        try:
            yield transaction
            if transaction.open:
                await pg.execute("COMMIT")
                transaction.open = False
        except BaseException:
            if not pg.closed and pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                await pg.execute("ROLLBACK")
            raise
        await transaction.prepare_the_rest()
