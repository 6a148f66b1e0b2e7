"""The intake's group commit (refit/shipping/intake_batch.py): deliveries arriving while one
statement is out go together in the next, one transaction for all of them (the rows share
their xmin); within a batch an event is kept once, its job carrying the origin of the
request that delivered it first; a body PostgreSQL refuses costs only its own delivery; an
outage answers every delivery of the batch 503, and the redelivery is kept once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from sqlalchemy import text

from refit import resources as current
from refit.shipping.intake_batch import batcher_for
from refit.shipping.webhooks import HANDLE_TASK
from tests.resilience.test_db_timeouts import (
    SLACK_SECONDS,
    _app_behind_proxy,
    _app_with,
    _assert_dependency_down,
)
from tests.shipping.helpers import inbox_locked
from tests.shipping.test_webhook_hot_path import JSON, URL
from tests.shipping.test_webhooks import track_updated

_IN_INTAKE = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND pid <> pg_backend_pid() AND query LIKE '%INSERT INTO webhook_inbox%'"
    " AND state = 'active'"
)


def _raw(number: str) -> bytes:
    return json.dumps(track_updated(number, "TRANSIT")).encode()


async def _scalar(resources, sql: str, **params: Any) -> Any:
    async with resources.sessionmaker() as session:
        return await session.scalar(text(sql), params)


async def _until(what: str, check) -> None:
    deadline = time.monotonic() + 10
    while not await check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


async def _rows(resources, prefix: str) -> list[Any]:
    """(tracking number or None, xmin, error, job's origin request id) of the rows kept whose
    body (or raw body) names `prefix`, and of their jobs."""
    async with resources.sessionmaker() as session:
        found = await session.execute(
            text(
                "SELECT w.body -> 'data' ->> 'tracking_number', w.xmin::text, w.error,"
                " j.args -> '_origin' ->> 'request_id', j.id IS NOT NULL"
                " FROM webhook_inbox w LEFT JOIN procrastinate_jobs j"
                "  ON j.task_name = :task AND j.args ->> 'inbox_id' = w.id::text"
                " WHERE coalesce(w.body::text, w.raw_body) LIKE :like ORDER BY 1"
            ),
            {"task": HANDLE_TASK, "like": f"%{prefix}%"},
        )
    return [tuple(r) for r in found.all()]


@pytest.mark.timeout(120)
async def test_deliveries_arriving_while_one_is_out_are_kept_in_one_statement(
    settings, resources, open_client
):
    async with _app_with(settings, open_client, db_seller_read_pool_size=4) as http:
        batcher = batcher_for(current.current().hot_path)
        async with inbox_locked(resources):
            first = asyncio.create_task(http.post(URL, content=_raw("9400GRP0"), headers=JSON))
            await _until("the first out", lambda: _in_intake(resources, 1))
            # Six new events, one of them twice, and the first's again: all while it is out.
            numbers = [f"9400GRP{i}" for i in range(1, 7)] + ["9400GRP3", "9400GRP0"]
            rest = [
                asyncio.create_task(
                    http.post(URL, content=_raw(n), headers={**JSON, "X-Request-ID": f"r{i}"})
                )
                for i, n in enumerate(numbers)
            ]
            await _until("all waiting", lambda: _batched(batcher, len(rest)))
            # Four connections, one statement: the others wait for it, not for a connection.
            assert await _scalar(resources, _IN_INTAKE) == 1
        answers = [await first, *[await task for task in rest]]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    status = {a.headers["x-request-id"]: a.json()["status"] for a in answers[1:]}
    assert answers[0].json()["status"] == "accepted" and status["r7"] == "duplicate"
    # 9400GRP3 twice (r2 and r6): whichever reached the batch first is kept.
    assert sorted([status["r2"], status["r6"]]) == ["accepted", "duplicate"]
    assert {status[f"r{i}"] for i in (0, 1, 3, 4, 5)} == {"accepted"}
    rows = await _rows(resources, "9400GRP")
    assert [r[0] for r in rows] == [f"9400GRP{i}" for i in range(7)]
    assert all(has_job for *_, has_job in rows)
    # The first alone, the six together: two transactions.
    assert rows[0][1] not in {r[1] for r in rows[1:]} and len({r[1] for r in rows[1:]}) == 1
    # Each job carries the id of the request whose delivery was kept.
    kept_by = "r2" if status["r2"] == "accepted" else "r6"
    assert [r[3] for r in rows[1:]] == ["r0", "r1", kept_by, "r3", "r4", "r5"]


async def _in_intake(resources, n: int) -> bool:
    return bool(await _scalar(resources, _IN_INTAKE + " AND wait_event_type = 'Lock'") == n)


async def _batched(batcher, n: int) -> bool:
    return len(batcher._waiting) == n


@pytest.mark.timeout(120)
async def test_a_body_the_database_refuses_costs_only_its_own_delivery(
    settings, resources, open_client
):
    """A number past numeric's range (json.loads reads it as inf, jsonb refuses it) in a
    batch of readable bodies: the batch is refused whole and sent again one by one, so that
    body is kept unreadable (`kept`, no job) and the others are accepted with their jobs."""
    refused = b'{"event": "track_updated", "data": {"tracking_number": "9400BADX", "x": 1e999999}}'
    async with _app_with(settings, open_client) as http:
        batcher = batcher_for(current.current().hot_path)
        async with inbox_locked(resources):
            first = asyncio.create_task(http.post(URL, content=_raw("9400BAD0"), headers=JSON))
            await _until("the first out", lambda: _in_intake(resources, 1))
            bodies = [_raw("9400BAD1"), refused, _raw("9400BAD2"), _raw("9400BAD3")]
            rest = [asyncio.create_task(http.post(URL, content=b, headers=JSON)) for b in bodies]
            await _until("all waiting", lambda: _batched(batcher, len(rest)))
        answers = [await first, *[await task for task in rest]]
    assert [(a.status_code, a.json()["status"]) for a in answers] == [
        (200, "accepted"),
        (200, "accepted"),
        (200, "kept"),
        (200, "accepted"),
        (200, "accepted"),
    ]
    rows = await _rows(resources, "9400BAD")
    readable = [r for r in rows if r[0] is not None]
    assert [r[0] for r in readable] == [f"9400BAD{i}" for i in range(4)]
    assert all(r[2] is None and r[4] for r in readable)
    (unreadable,) = [r for r in rows if r[0] is None]
    assert unreadable[2].startswith("not storable as jsonb") and not unreadable[4]


@pytest.mark.timeout(120)
async def test_an_outage_under_a_batch_answers_each_delivery_503_and_the_redelivery_is_kept_once(
    settings, resources, open_client
):
    numbers = [f"9400OUT{i}" for i in range(6)]
    async with _app_behind_proxy(
        settings, open_client, db_connect_timeout_seconds=2, db_statement_timeout_ms=1000
    ) as (http, proxy):
        assert (await http.post(URL, content=_raw("9400OUTW"), headers=JSON)).status_code == 200
        proxy.black_hole()
        started = time.monotonic()
        down = await asyncio.gather(
            *(http.post(URL, content=_raw(n), headers=JSON) for n in numbers)
        )
        for answer in down:
            _assert_dependency_down(answer)
        # One statement's bound, or two (the first alone, the rest after it), not six.
        assert time.monotonic() - started < 2 * (2.0 + 1.0) + SLACK_SECONDS
        proxy.cut()  # what the black hole held back is dropped, never sent late
        proxy.restore()
        again = await asyncio.gather(
            *(http.post(URL, content=_raw(n), headers=JSON) for n in numbers)
        )
    assert all(a.status_code == 200 for a in again), [a.text for a in again]
    # A statement cut by the black hole never reached PostgreSQL: each is new now.
    assert {a.json()["status"] for a in again} == {"accepted"}
    rows = await _rows(resources, "9400OUT")
    assert [r[0] for r in rows] == sorted([*numbers, "9400OUTW"]) and all(r[4] for r in rows)


@pytest.mark.timeout(120)
async def test_deliveries_behind_a_statement_that_hangs_are_answered_503_unwritten(
    settings, resources, open_client
):
    """No statement timeout, and the first delivery's statement hangs on a lock: those behind
    it wait to go out no longer than a statement waits for a connection
    (REFIT_DB_SELLER_READ_WAIT_SECONDS), are answered 503 and were not written (the
    carrier's redelivery is accepted); the first is kept once the lock goes."""
    async with _app_with(
        settings, open_client, db_statement_timeout_ms=0, db_seller_read_wait_seconds=1.0
    ) as http:
        batcher = batcher_for(current.current().hot_path)
        async with inbox_locked(resources):
            first = asyncio.create_task(http.post(URL, content=_raw("9400HANG0"), headers=JSON))
            await _until("the first out", lambda: _in_intake(resources, 1))
            started = time.monotonic()
            behind = await asyncio.gather(
                *(http.post(URL, content=_raw(f"9400HANG{i}"), headers=JSON) for i in (1, 2, 3))
            )
            waited = time.monotonic() - started
            for answer in behind:
                _assert_dependency_down(answer)
            assert 1.0 <= waited < 1.0 + SLACK_SECONDS, waited
            assert not batcher._waiting and not first.done()
        assert (await first).json()["status"] == "accepted"
        again = await asyncio.gather(
            *(http.post(URL, content=_raw(f"9400HANG{i}"), headers=JSON) for i in (1, 2, 3))
        )
    assert [a.json()["status"] for a in again] == ["accepted"] * 3
    assert [r[0] for r in await _rows(resources, "9400HANG")] == [f"9400HANG{i}" for i in range(4)]
