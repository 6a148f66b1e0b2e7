"""The red team on job statements prepared with their parameters declared as their values'
literal types (refit/prepared.py `literal_types`, `forms`, `try_prepare`; refit/one_message.py
`JobMessages`): values whose literal type changes from call to call, a string parameter used
twice, many values for one statement, values psycopg cannot adapt, a missing parameter.

The reference is always the text path (a pool whose prepare_threshold is None)."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

import psycopg_pool
import pytest
from psycopg.types.json import Jsonb

from refit import prepared
from refit.one_message import Step, job_messages
from tests.job_pools import queue_like_pool

pytestmark = pytest.mark.timeout(30)


class _Color(enum.Enum):
    RED = "r"


class _Level(enum.IntEnum):
    HIGH = 3


async def _ours(pool: psycopg_pool.AsyncConnectionPool, marker: str) -> list[str]:
    async with pool.connection() as pg:
        cursor = await pg.execute(
            "SELECT statement FROM pg_prepared_statements WHERE from_sql", prepare=False
        )
        return [row[0] for row in await cursor.fetchall() if marker in row[0]]


async def _jobs(pool, runs: list[list[Step]]) -> list[Any]:
    """Each run a job: its first step in the first message (prepared before BEGIN), the rest
    in a later one (text, prepared after COMMIT). A failure is recorded as its type and text."""
    out: list[Any] = []
    for steps in runs:
        try:
            async with job_messages(pool) as transaction:
                got = await transaction.send(steps[0])
                if steps[1:]:
                    got += await transaction.send(*steps[1:], commit=True)
            out.append(got)
        except Exception as exc:  # compared with the text path's own failure
            out.append((type(exc).__name__, str(exc)))
    return out


async def _both_ways(settings, runs: list[list[Step]]) -> tuple[list[Any], list[Any]]:
    answers: dict[bool, list[Any]] = {}
    for prepare in (True, False):
        pool = await queue_like_pool(settings, prepare=prepare)
        try:
            answers[prepare] = await _jobs(pool, runs)
            # The connection still answers after whatever the runs did.
            assert await _jobs(pool, [[Step("SELECT 1 AS one")]]) == [[[{"one": 1}]]]
        finally:
            await pool.close()
    return answers[True], answers[False]


_NAIVE = dt.datetime(2026, 3, 4, 5, 6, 7, 89)
_VALUES: list[Any] = [
    5, 2**40, None, 2**70, -(2**31), -(2**31) - 1, -(2**63), True, 0, [1, 2], [], ["a"],
    [1, 2**40], [[1, 2], [3, 4]], [None, 1], ["a", None], Decimal("1.5"), 1.5, -0.0,
    Decimal("1E+2"), float("inf"), _NAIVE, _NAIVE.replace(tzinfo=dt.UTC), dt.date(2026, 1, 2),
    dt.time(1, 2), dt.timedelta(days=1, seconds=3), _Color.RED, _Level.HIGH, b"\x00'ab",
    [b"x"], Jsonb({"k": [1, None]}), "007", [True, None], [Decimal("1.25")],
]  # fmt: skip


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT %(x)s AS v",
        "SELECT pg_typeof(%(x)s)::text AS t",
        "SELECT %(x)s IS NULL AS n, %(x)s AS v",
        "SELECT coalesce(%(x)s, %(x)s) AS v",
    ],
    ids=["bare", "pg-typeof", "twice-is-null", "coalesce-twice"],
)
async def test_values_whose_literal_type_changes_answer_as_the_text(settings, sql):
    runs = [[Step(sql, {"x": v}), Step(sql, {"x": v})] for v in _VALUES + _VALUES[::-1]]
    as_prepared, as_text = await _both_ways(settings, runs)
    assert len(as_text) == 2 * len(_VALUES)
    # Not vacuous: the text path answered the int 5 as an integer, the big one as numeric.
    if sql == "SELECT %(x)s AS v":
        assert as_text[0] == [[{"v": 5}], [{"v": 5}]]
        assert as_text[3] == [[{"v": Decimal(2**70)}], [{"v": Decimal(2**70)}]]
    for value, mine, theirs in zip(_VALUES + _VALUES[::-1], as_prepared, as_text, strict=True):
        assert mine == theirs, value


# Found by this file, fixed since (was):
# refit/prepared.py `_literal_type` declares a str parameter "unknown" (as its
# literal, an untyped quoted constant) and `forms` makes every occurrence of one name the same
# $n. As text each occurrence is its own literal, typed where it stands; prepared, PostgreSQL
# types $n at its first use and every later use is that type, silently. `SELECT %(x)s::int,
# %(x)s::text` of "007" answers (7, '007') as text and (7, '7') prepared; `%(x)s::date,
# %(x)s` of "2020-1-1" answers the raw string as text and a date prepared. Any job statement
# that uses a string parameter twice in two contexts answers differently once prepared.
@pytest.mark.parametrize(
    ("sql", "value", "expected"),
    [
        ("SELECT %(x)s::int AS n, %(x)s::text AS s", "007", {"n": 7, "s": "007"}),
        (
            "SELECT %(x)s::date AS d, %(x)s AS raw",
            "2020-1-1",
            {"d": dt.date(2020, 1, 1), "raw": "2020-1-1"},
        ),
    ],
    ids=["int-then-text", "date-then-bare"],
)
async def test_a_string_parameter_used_twice_answers_as_the_text(settings, sql, value, expected):
    runs = [[Step(sql, {"x": value}), Step(sql, {"x": value})]] * 3
    as_prepared, as_text = await _both_ways(settings, runs)
    assert as_text == [[[expected], [expected]]] * 3
    assert as_prepared == as_text


async def test_a_string_parameter_used_twice_against_char_columns(settings):
    """char(n) ignores trailing blanks against its own literal, not against text: the
    second use of a parameter typed text by its first use compares otherwise."""
    sql = (
        "SELECT count(*) AS n FROM (VALUES ('b'::text, 'a'::char(5))) AS t(v, c) "
        "WHERE v = %(x)s OR c = %(x)s"
    )
    runs = [[Step(sql, {"x": "a "}), Step(sql, {"x": "a "})]] * 3
    as_prepared, as_text = await _both_ways(settings, runs)
    assert as_text == [[[{"n": 1}], [{"n": 1}]]] * 3
    # Found by this file, fixed since (was):
    # the same as above (the first use, `v = $1`, types $1 text; `c = $1` then
    # compares c::text with 'a ': no row), a WHERE clause that matched as text matches nothing.
    assert as_prepared == as_text


async def test_many_values_for_one_statement_keep_few_prepared_copies(settings):
    sql = "SELECT %(a)s AS a, %(b)s AS b, 'bounded-marker' AS m"
    kinds = [
        lambda i: i,
        lambda i: i * 2**33,
        lambda i: i * 2**64,
        lambda i: str(i),
        lambda i: None,
        lambda i: i % 2 == 0,
        lambda i: -i,
    ]
    pool = await queue_like_pool(settings, prepare=True)
    try:
        for i in range(1000):
            a, b = kinds[i % len(kinds)](i), kinds[(i // 7) % len(kinds)](i + 1)
            async with job_messages(pool) as transaction:
                (rows,) = await transaction.send(Step(sql, {"a": a, "b": b}), commit=True)
            assert rows[0]["a"] == a and rows[0]["b"] == b, (a, b)
        copies = await _ours(pool, "bounded-marker")
        async with pool.connection() as pg:
            noted = len(prepared._prepared.get(pg, ()))
    finally:
        await pool.close()
    # int4, int8, numeric, unknown, bool for each of two parameters: at most 25, whatever
    # the number of values (unknown pairs are refused as written and go as text).
    assert 0 < len(copies) <= 25, len(copies)
    assert noted <= 25, noted


async def test_a_value_psycopg_cannot_adapt_fails_as_the_text_and_spares_the_connection(
    settings,
):
    sql = "SELECT %(x)s AS v, %(y)s AS w"
    runs = [
        [Step(sql, {"x": object(), "y": 1})],
        [Step("SELECT 2 AS two"), Step(sql, {"x": 1, "y": {"no": "jsonb"}})],
        [Step(sql, {"x": 1, "y": 2})],
        [Step(sql, {"x": [object()], "y": 2})],
    ]
    as_prepared, as_text = await _both_ways(settings, runs)
    assert as_text[0][0] == "ProgrammingError" and "cannot adapt" in as_text[0][1]
    assert as_text[2] == [[{"v": 1, "w": 2}]]
    assert as_prepared == as_text


# Found by this file, fixed since (was):
# refit/prepared.py `literal_types` reads `params[name]` for each of the query's
# parameters: a missing one raises a bare KeyError out of `JobMessages.send` (via `_typed`),
# where the text path (psycopg) raises psycopg.ProgrammingError("query parameter missing:
# ..."). A caller handling psycopg.Error (as job code does) sees another exception when the
# pool prepares.
async def test_a_missing_parameter_fails_as_the_text(settings):
    runs = [[Step("SELECT %(x)s AS v, %(y)s AS w", {"x": 1})]]
    as_prepared, as_text = await _both_ways(settings, runs)
    assert as_text[0][0] == "ProgrammingError", as_text
    assert as_prepared[0][0] == as_text[0][0], (as_prepared, as_text)


async def test_no_parameters_and_percent_escapes_once_each(settings):
    steps = [
        Step("SELECT 'p%%q' AS v, 'noparam-marker' AS m"),
        Step("SELECT 'noparam-marker' AS m, %(x)s::text || '%%' AS v", {"x": 5}),
        Step("SELECT 'noparam-marker' AS m, %(x)s::text || '%%' AS v", {"x": "5"}),
    ]
    runs = [steps] * 4
    as_prepared, as_text = await _both_ways(settings, runs)
    assert as_text[0] == [
        [{"v": "p%q", "m": "noparam-marker"}],
        [{"m": "noparam-marker", "v": "5%"}],
        [{"m": "noparam-marker", "v": "5%"}],
    ]
    assert as_prepared == as_text
    pool = await queue_like_pool(settings, prepare=True)
    try:
        await _jobs(pool, runs)
        copies = await _ours(pool, "noparam-marker")
    finally:
        await pool.close()
    # One copy for the statement without parameters; one each for int4 and unknown.
    assert len(copies) == 3, copies
    assert any("'p%q'" in c for c in copies), copies
