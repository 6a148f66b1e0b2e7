"""A job's transaction in messages (`one_message.job_messages`) sends each statement as the
EXECUTE of a copy prepared on its connection (refit/prepared.py): the same answers as the
text, each statement prepared once, none inside a transaction; one PostgreSQL will not
prepare goes as text; a copy gone stale under a migration is dropped, and a first message is
sent again as text rather than failing the job."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import psycopg
import psycopg_pool
import pytest
from psycopg.adapt import Transformer
from psycopg.types.json import Jsonb

from refit import prepared
from refit.db import libpq_url
from refit.one_message import Step, job_messages
from tests.job_pools import queue_like_pool


@pytest.fixture
async def table(settings) -> AsyncIterator[str]:
    name = f"jm_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(
        libpq_url(settings.database_url), autocommit=True
    ) as pg:
        await pg.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
        try:
            yield name
        finally:
            await pg.execute(f"DROP TABLE {name}")


async def _prepared(pool: psycopg_pool.AsyncConnectionPool) -> list[str]:
    async with pool.connection() as pg:
        cursor = await pg.execute(
            "SELECT statement FROM pg_prepared_statements WHERE from_sql ORDER BY statement",
            prepare=False,
        )
        return [row[0] for row in await cursor.fetchall()]


async def _a_job(pool: psycopg_pool.AsyncConnectionPool, table: str, id_: int) -> list[Any]:
    """Three messages: a write and a read with BEGIN; a write met inside the transaction; a
    read with COMMIT."""
    async with job_messages(pool) as transaction:
        _, first = await transaction.send(
            Step(f"INSERT INTO {table} (id, v) VALUES (%(id)s, %(v)s)", {"id": id_, "v": "a"}),
            Step(f"SELECT v FROM {table} WHERE id = %(id)s", {"id": id_}),
        )
        await transaction.send(
            Step(f"UPDATE {table} SET v = %(v)s || v WHERE id = %(id)s", {"id": id_, "v": "b"})
        )
        (last,) = await transaction.send(
            Step(f"SELECT v FROM {table} WHERE id = %(id)s", {"id": id_}), commit=True
        )
    return [first, last]


@pytest.mark.parametrize("prepare", [True, False])
async def test_each_statement_is_prepared_once_and_answers_as_text_did(settings, table, prepare):
    pool = await queue_like_pool(settings, prepare=prepare)
    try:
        answers = [await _a_job(pool, table, id_) for id_ in range(1, 9)]
        assert answers == [[[{"v": "a"}], [{"v": "ba"}]]] * 8
        prepared = await _prepared(pool)
    finally:
        await pool.close()
    if not prepare:
        assert prepared == []  # behind a transaction pooler: text, as before
        return
    ours = [text for text in prepared if table in text]
    assert len(ours) == 3, ours  # the INSERT, the SELECT (twice used, once prepared), the UPDATE
    assert any(f"INSERT INTO {table} (id, v) VALUES ($1, $2)" in text for text in ours)
    assert any(f"SELECT v FROM {table} WHERE id = $1" in text for text in ours)
    assert any(f"UPDATE {table} SET v = $1 || v WHERE id = $2" in text for text in ours)


async def test_a_statement_postgres_will_not_prepare_goes_as_text(settings, table):
    # PREPARE cannot tell the type of a parameter to a function of "any" (a literal bound
    # client-side is text), and SET is no statement PREPARE takes.
    echo = "SELECT jsonb_build_object('v', %(v)s) AS echoed"
    pool = await queue_like_pool(settings, prepare=True)
    try:
        for id_ in (1, 2, 3):
            async with job_messages(pool) as transaction:
                _, echoed, _ = await transaction.send(
                    Step("SET LOCAL enable_sort = off"),
                    Step(echo, {"v": f"x{id_}"}),
                    Step(
                        f"INSERT INTO {table} (id, v) VALUES (%(id)s, %(v)s)", {"id": id_, "v": "x"}
                    ),
                    commit=True,
                )
            assert echoed == [{"echoed": {"v": f"x{id_}"}}]
        async with pool.connection() as pg:
            cursor = await pg.execute(f"SELECT id FROM {table} ORDER BY id")
            assert [row[0] for row in await cursor.fetchall()] == [1, 2, 3]
        prepared = await _prepared(pool)
    finally:
        await pool.close()
    assert not [text for text in prepared if "echoed" in text or "enable_sort" in text]
    assert [text for text in prepared if f"INSERT INTO {table}" in text]


async def test_a_stale_copy_is_dropped_and_a_first_message_sent_again_as_text(settings, table):
    read = Step(f"SELECT t.* FROM {table} t WHERE t.id = %(id)s", {"id": 1})
    pool = await queue_like_pool(settings, prepare=True)
    try:
        async with pool.connection() as pg:
            await pg.execute(f"INSERT INTO {table} VALUES (1, 'a')")
        for _ in range(3):
            async with job_messages(pool) as transaction:
                assert await transaction.send(read, commit=True) == [[{"id": 1, "v": "a"}]]
        # A migration adds a column: the prepared `t.*` may no longer answer as it was planned.
        async with await psycopg.AsyncConnection.connect(
            libpq_url(settings.database_url), autocommit=True
        ) as migration:
            await migration.execute(f"ALTER TABLE {table} ADD COLUMN w int DEFAULT 7")

        # The first message: the whole transaction so far, so it is sent again as text.
        async with job_messages(pool) as transaction:
            (rows,) = await transaction.send(read, commit=True)
        assert rows == [{"id": 1, "v": "a", "w": 7}]

        # Prepared again by the next job that meets the statement in its first message.
        async with job_messages(pool) as transaction:
            await transaction.send(read, commit=True)
        assert [text for text in await _prepared(pool) if f"FROM {table} t" in text]
        async with pool.connection() as pg:
            await pg.execute(f"ALTER TABLE {table} ADD COLUMN y int DEFAULT 9")

        # A later message: the transaction has done work already, so the job fails (its
        # retry runs it whole) and the stale copy is dropped; the next one answers.
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            async with job_messages(pool) as transaction:
                await transaction.send(Step("SELECT 1 AS one"))
                await transaction.send(read, commit=True)
        async with pool.connection() as pg:
            assert pg.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        async with job_messages(pool) as transaction:
            (rows,) = await transaction.send(read, commit=True)
        assert rows == [{"id": 1, "v": "a", "w": 7, "y": 9}]
    finally:
        await pool.close()


async def test_each_values_declared_type_is_that_of_psycopgs_literal_of_it(settings):
    """The types `literal_types` knows without composing a literal are the ones psycopg's
    literal would carry (refit/prepared.py `_CAST_BY_KIND` and the bare constants)."""
    values = [
        None, "x", "it's", True, False, 0, -5, 2**31, -(2**31) - 1, 2**63, uuid.uuid4(),
        Jsonb({"a": [1, None]}), dt.datetime.now(dt.UTC), dt.datetime(2026, 1, 2, 3, 4),
        dt.date(2026, 12, 7), Decimal("1.5"), Decimal("NaN"), 1.5, float("inf"), [1, 2],
        ["a"], [uuid.uuid4()], [], b"\x00",
    ]  # fmt: skip
    async with await psycopg.AsyncConnection.connect(libpq_url(settings.database_url)) as pg:
        literals = Transformer(pg)
        for value in values:
            declared = prepared._literal_type(literals, value)
            assert declared == prepared.type_of_literal(literals.as_literal(value)), value
