"""The red team on jobs' transactions sent as prepared statements (refit/one_message.py
`job_messages`, refit/prepared.py): each step goes as `EXECUTE name(values)` of a copy prepared
once per connection. Attacked as an insider would break it: values of every kind (NULLs,
jsonb, arrays, uuid, numeric, booleans, quotes, percent signs, `$1`-like text), literal `%%`,
the same SQL twice in one message and a parameter used twice, a constraint violation in the
first and in a later message, a transient error and a cancellation while preparing, a copy
prepared but never noted (and gone stale), DISCARD ALL (RLS and N+1 jobs on N connections:
tests/security/test_attack_prepared_jobs_2.py).

Refusal, every time: the same answers as the text (REFIT_DB_PREPARED_STATEMENTS off), nothing
written by a transaction that failed, the connection idle afterwards, and the next job right."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from refit import prepared
from refit.db import libpq_url
from refit.one_message import Step, job_messages
from tests.job_pools import queue_like_pool

pytestmark = pytest.mark.timeout(60)


async def _admin(settings) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(libpq_url(settings.database_url), autocommit=True)


@pytest.fixture
async def table(settings) -> AsyncIterator[str]:
    name = f"atk_{uuid.uuid4().hex[:10]}"
    async with await _admin(settings) as pg:
        await pg.execute(
            f"CREATE TABLE {name} (id int PRIMARY KEY, v text, n numeric, b boolean, j jsonb,"
            " a text[], u uuid[], t timestamptz)"
        )
        try:
            yield name
        finally:
            await pg.execute(f"DROP TABLE IF EXISTS {name}")


async def _prepared_texts(pg: psycopg.AsyncConnection[Any]) -> list[str]:
    cursor = await pg.execute(
        "SELECT statement FROM pg_prepared_statements WHERE from_sql", prepare=False
    )
    return [row[0] for row in await cursor.fetchall()]


async def _one_message(pool, *steps: Step) -> list[list[dict[str, Any]]]:
    async with job_messages(pool) as transaction:
        return await transaction.send(*steps, commit=True)


async def _both_ways(settings, *steps: Step, runs: int = 3) -> tuple[list[Any], list[Any]]:
    """The answers of `runs` jobs sending `steps` in their first message, prepared and as text."""
    answers: dict[bool, list[Any]] = {}
    for prepare in (True, False):
        pool = await queue_like_pool(settings, prepare=prepare)
        try:
            answers[prepare] = [await _one_message(pool, *steps) for _ in range(runs)]
        finally:
            await pool.close()
    return answers[True], answers[False]


# Found by this file (fixed): a parameter whose type only its value told (a literal bound
# client-side) was typed by PREPARE from the statement alone: `SELECT %(x)s` became text ('5',
# 'false': a truthy string), and `%(a)s + 1` integer (1.5 rounded to 2 before the addition),
# where the text answers 5, False and 2.5. Parameters are now declared with their literals'
# types (refit/prepared.py literal_types).
@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT %(x)s AS v", {"x": 5}),
        ("SELECT %(x)s AS v", {"x": False}),
        ("SELECT %(a)s + 1 AS v", {"a": Decimal("1.5")}),
    ],
    ids=["int-as-text", "bool-as-text", "numeric-rounded"],
)
async def test_a_value_typed_by_its_literal_answers_as_its_text_did(settings, sql, params):
    as_prepared, as_text = await _both_ways(settings, Step(sql, params))
    assert as_text[0] == [[{"v": next(iter(params.values())) + (1 if "+" in sql else 0)}]]
    assert as_prepared == as_text


_ODD = "O'Brien \\ 100% %s %(x)s $1 $$ -- ; COMMIT; \u00e9\u6f22"


async def test_values_of_every_kind_are_written_and_read_as_text_writes_them(settings, table):
    insert = (
        f"INSERT INTO {table} (id, v, n, b, j, a, u, t) "
        "VALUES (%(id)s, %(v)s, %(n)s, %(b)s, %(j)s, %(a)s, %(u)s, %(t)s)"
    )
    read = f"SELECT * FROM {table} WHERE id = %(id)s"
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    rows = [
        {"id": 1, "v": _ODD, "n": Decimal("12.30"), "b": True, "j": Jsonb({"k": _ODD}),
         "a": [_ODD, "", "NULL"], "u": [uuid.UUID(int=7)], "t": when},
        {"id": 2, "v": None, "n": None, "b": None, "j": None, "a": None, "u": None, "t": None},
        {"id": 3, "v": "", "n": Decimal("-0.000001"), "b": False, "j": Jsonb(None),
         "a": [], "u": [], "t": when},
        {"id": 4, "v": "null", "n": Decimal(10**30), "b": False, "j": Jsonb([1, "2", None]),
         "a": [None], "u": [uuid.UUID(int=1), uuid.UUID(int=2)], "t": when},
    ]  # fmt: skip
    answers: dict[bool, list[Any]] = {}
    for prepare in (True, False):
        pool = await queue_like_pool(settings, prepare=prepare)
        try:
            async with pool.connection() as pg:
                await pg.execute(f"DELETE FROM {table}")
            got = []
            for row in rows:
                # A first message (prepared before BEGIN) and a later one (text, then
                # prepared after COMMIT); the second round EXECUTEs both.
                async with job_messages(pool) as transaction:
                    await transaction.send(Step(insert, row))
                    (back,) = await transaction.send(Step(read, {"id": row["id"]}), commit=True)
                got.append(back)
                async with job_messages(pool) as transaction:
                    got.append(await transaction.send(Step(read, {"id": row["id"]}), commit=True))
            answers[prepare] = got
        finally:
            await pool.close()
    assert answers[True] == answers[False]
    first = answers[True][0][0]
    assert first["v"] == _ODD and first["j"] == {"k": _ODD} and first["a"] == [_ODD, "", "NULL"]
    assert answers[True][4][0]["a"] == [] and answers[True][4][0]["j"] is None


# Found by this file (fixed): a literal `%%` just before "(name)s" ('%%(x)s', the text %(x)s)
# was renamed as a parameter by one_message's placeholder pattern when sent as text (the job
# read back "%(s0_x)s"), not when prepared: the pattern now skips the `%%` escape.
async def test_literal_percent_signs_answer_the_same_prepared_and_as_text(settings):
    steps = (
        Step("SELECT 'a%%b' AS v, %(x)s::text AS x", {"x": "50%"}),
        Step("SELECT '%%(x)s' AS v, %(x)s::int AS x", {"x": 1}),
        Step("SELECT 'c%%d' AS v"),
    )
    as_prepared, as_text = await _both_ways(settings, *steps)
    expected = [[{"v": "a%b", "x": "50%"}], [{"v": "%(x)s", "x": 1}], [{"v": "c%d"}]]
    assert as_prepared == [expected] * 3
    assert as_text == [expected] * 3


async def test_the_same_sql_twice_in_a_message_and_a_parameter_used_twice(settings, table):
    insert = f"INSERT INTO {table} (id, v) VALUES (%(id)s, %(v)s || ':' || %(id)s::text)"
    twice = f"SELECT id, v FROM {table} WHERE id = %(id)s OR id = %(id)s + 100 ORDER BY id"
    pool = await queue_like_pool(settings)
    try:
        for base in (0, 10, 20):
            async with job_messages(pool) as transaction:
                await transaction.send(
                    Step(insert, {"id": base + 1, "v": "a"}),
                    Step(insert, {"id": base + 101, "v": "b"}),
                )
                first, second = await transaction.send(
                    Step(twice, {"id": base + 1}), Step(twice, {"id": base + 2}), commit=True
                )
            assert first == [
                {"id": base + 1, "v": f"a:{base + 1}"},
                {"id": base + 101, "v": f"b:{base + 101}"},
            ]
            assert second == []
        async with pool.connection() as pg:
            ours = [s for s in await _prepared_texts(pg) if table in s]
        # Each once, however many times met: the SELECT, and the INSERT whose id is both an
        # integer and text (each occurrence its own parameter, declared as its literal).
        assert len(ours) == 2, ours
        assert any("OR id = $2 + 100" in text for text in ours), ours
        assert any("(int4, unknown, int4) AS INSERT" in text for text in ours), ours
    finally:
        await pool.close()


@pytest.mark.parametrize("where", ["first", "later"])
async def test_a_statement_that_fails_at_execution_writes_nothing(settings, table, where):
    insert = f"INSERT INTO {table} (id, v) VALUES (%(id)s, %(v)s)"
    pool = await queue_like_pool(settings)
    try:
        await _one_message(pool, Step(insert, {"id": 1, "v": "kept"}))  # prepares it
        await _one_message(pool, Step(insert, {"id": 99, "v": "x"}))  # and EXECUTEs it
        for _ in range(2):
            with pytest.raises(psycopg.errors.UniqueViolation):
                async with job_messages(pool) as transaction:
                    if where == "later":
                        await transaction.send(Step(insert, {"id": 2, "v": "lost"}))
                    await transaction.send(
                        Step(insert, {"id": 3, "v": "lost"}),
                        Step(insert, {"id": 1, "v": "dup"}),
                        Step(insert, {"id": 4, "v": "lost"}),
                        commit=True,
                    )
        async with pool.connection() as pg:
            assert pg.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            cursor = await pg.execute(f"SELECT id, v FROM {table} ORDER BY id")
            assert await cursor.fetchall() == [(1, "kept"), (99, "x")]
        await _one_message(pool, Step(insert, {"id": 5, "v": "next"}))
        async with pool.connection() as pg:
            cursor = await pg.execute(f"SELECT v FROM {table} WHERE id = 5")
            assert await cursor.fetchall() == [("next",)]
    finally:
        await pool.close()


def _text_only(query: str) -> bool:
    """Whether `query` is sent as text for good in this process (with any parameter types)."""
    return any(text == query for text, _ in prepared._as_text)


def _no_longer_text_only(query: str) -> None:
    prepared._as_text.difference_update({key for key in prepared._as_text if key[0] == query})


async def test_a_lock_timeout_while_preparing_does_not_send_it_as_text_forever(settings, table):
    read = f"SELECT v FROM {table} WHERE id = %(id)s"
    _no_longer_text_only(read)
    pool = await queue_like_pool(settings, options="-c lock_timeout=300")
    try:
        async with await _admin(settings) as migration:
            # A migration holds the table: PREPARE (its analysis locks the table) waits, then
            # gives up, a transient OperationalError, not a refusal of the statement.
            async with migration.transaction():
                await migration.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    await _one_message(pool, Step(read, {"id": 1}))
        assert not _text_only(read)
        assert await _one_message(pool, Step(read, {"id": 1})) == [[]]
        async with pool.connection() as pg:
            assert pg.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert [s for s in await _prepared_texts(pg) if table in s]
    finally:
        await pool.close()


# Found by this file (fixed; speed only): a table or column missing for a while (new code
# before its migration) marked the statement as text for the life of the process; only
# PostgreSQL's refusals of the statement as written do now (prepared._REFUSED_AS_WRITTEN).
async def test_a_table_missing_for_a_while_does_not_send_it_as_text_forever(settings):
    name = f"atk_late_{uuid.uuid4().hex[:8]}"
    read = f"SELECT v FROM {name} WHERE id = %(id)s"
    pool = await queue_like_pool(settings)
    try:
        with pytest.raises(psycopg.errors.UndefinedTable):  # the job fails, and is retried
            await _one_message(pool, Step(read, {"id": 1}))
        async with await _admin(settings) as migration:
            await migration.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
        for _ in range(3):
            assert await _one_message(pool, Step(read, {"id": 1})) == [[]]
        async with pool.connection() as pg:
            ours = [s for s in await _prepared_texts(pg) if name in s]
        assert len(ours) == 1, f"sent as text for good: {_text_only(read)}"
    finally:
        _no_longer_text_only(read)
        await pool.close()
        async with await _admin(settings) as pg:
            await pg.execute(f"DROP TABLE IF EXISTS {name}")


async def test_a_job_cancelled_while_preparing_leaves_the_connection_usable(settings, table):
    read = f"SELECT v FROM {table} WHERE id = %(id)s"
    pool = await queue_like_pool(settings)
    try:
        async with await _admin(settings) as migration:
            async with migration.transaction():
                await migration.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                job = asyncio.ensure_future(_one_message(pool, Step(read, {"id": 1})))
                await asyncio.sleep(0.5)  # its PREPARE waits on the lock
                assert not job.done()
                job.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await asyncio.wait_for(job, 15)
            await migration.execute(f"INSERT INTO {table} (id, v) VALUES (1, 'one')")
        for _ in range(3):
            assert await _one_message(pool, Step(read, {"id": 1})) == [[{"v": "one"}]]
        async with pool.connection() as pg:
            assert pg.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert len([s for s in await _prepared_texts(pg) if table in s]) == 1
    finally:
        await pool.close()


async def test_a_copy_prepared_but_never_noted_and_gone_stale_still_answers(settings, table):
    """A job cancelled after PostgreSQL prepared its copy but before it was noted, then a
    migration: the next job meets a copy it does not know of, stale."""
    read = f"SELECT t.id, t.v, t.* FROM {table} t WHERE t.id = %(id)s"
    _, prepare, _ = prepared.forms(read)
    pool = await queue_like_pool(settings)
    try:
        async with pool.connection() as pg:
            await pg.execute(f"INSERT INTO {table} (id, v) VALUES (1, 'one')")
            await pg.execute(prepare.encode(), prepare=False)  # not in prepared._prepared
        async with await _admin(settings) as migration:
            await migration.execute(f"ALTER TABLE {table} ADD COLUMN w int DEFAULT 7")
        for _ in range(3):
            ((row,),) = await _one_message(pool, Step(read, {"id": 1}))
            assert (row["id"], row["v"], row["w"]) == (1, "one", 7)
    finally:
        await pool.close()


async def test_after_discard_all_a_failed_attempt_writes_nothing_and_the_retry_once(
    settings, table
):
    insert = f"INSERT INTO {table} (id, v) VALUES (%(id)s, %(v)s)"
    bump = f"UPDATE {table} SET v = v || '+' WHERE id = %(id)s"
    pool = await queue_like_pool(settings)

    async def job(id_: int) -> None:
        async with job_messages(pool) as transaction:
            await transaction.send(Step(insert, {"id": id_, "v": "j"}))
            await transaction.send(Step(bump, {"id": id_}), commit=True)

    try:
        await job(1)
        await job(2)  # both statements prepared and EXECUTEd
        async with pool.connection() as pg:
            await pg.execute("DISCARD ALL")
        failures = 0
        for _ in range(3):  # the queue's retries
            try:
                await job(3)
                break
            except prepared.STALE:
                failures += 1
        assert failures <= 1
        async with pool.connection() as pg:
            cursor = await pg.execute(f"SELECT id, v FROM {table} ORDER BY id")
            assert await cursor.fetchall() == [(1, "j+"), (2, "j+"), (3, "j+")]
    finally:
        await pool.close()
