"""The intake's one statement on the hot path's asyncpg connections (refit/hot_path.py): the
same event delivered N+1 times at once is kept once with one job; a database that stops
answering, or a statement held past its timeout, is a 503 within the bound and heals, and the
carrier's redelivery leaves one row and one job; a connection that died while idle costs the
carrier no error and no second row."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from sqlalchemy import func, select, text

from refit.hot_path import positional
from refit.models.shipping import WebhookInbox
from refit.settings import DEV_WEBHOOK_TOKEN
from refit.shipping.webhooks import HANDLE_TASK
from tests.resilience.test_db_timeouts import (
    SLACK_SECONDS,
    _app_behind_proxy,
    _app_with,
    _assert_dependency_down,
)
from tests.shipping.helpers import inbox_locked
from tests.shipping.test_webhooks import track_updated

URL = f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}"
JSON = {"Content-Type": "application/json"}


async def _kept(resources, number: str) -> tuple[int, int]:
    """(inbox rows, their jobs) for a tracking number."""
    async with resources.sessionmaker() as session:
        rows = (
            await session.scalars(
                select(WebhookInbox.id).where(
                    WebhookInbox.body["data"]["tracking_number"].astext == number
                )
            )
        ).all()
        jobs = await session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task "
                "AND args->>'inbox_id' = ANY(:ids)"
            ),
            {"task": HANDLE_TASK, "ids": [str(r) for r in rows]},
        )
    return len(rows), int(jobs or 0)


def test_named_placeholders_become_numbered_once_per_name():
    sql, args = positional(
        "SELECT %(a)s, %(b)s::int, %(a)s IS NULL", {"b": 2, "a": "x", "unused": 3}
    )
    assert sql == "SELECT $1, $2::int, $1 IS NULL"
    assert args == ("x", 2)


async def test_one_event_delivered_at_once_many_times_is_kept_once_with_one_job(client, resources):
    raw = json.dumps(track_updated("9400HOTONCE", "TRANSIT")).encode()
    answers = await asyncio.gather(
        *(client.post(URL, content=raw, headers=JSON) for _ in range(11))
    )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["accepted"] + ["duplicate"] * 10
    assert await _kept(resources, "9400HOTONCE") == (1, 1)


@pytest.mark.timeout(120)
async def test_a_statement_past_its_timeout_is_a_503_and_the_redelivery_is_kept_once(
    settings, resources, open_client
):
    raw = json.dumps(track_updated("9400HOTSLOW", "TRANSIT")).encode()
    async with _app_with(settings, open_client, db_statement_timeout_ms=1000) as http:
        warm = json.dumps(track_updated("9400HOTWARM", "TRANSIT")).encode()
        assert (await http.post(URL, content=warm, headers=JSON)).json()["status"] == "accepted"
        async with inbox_locked(resources):
            started = time.monotonic()
            response = await http.post(URL, content=raw, headers=JSON)
            waited = time.monotonic() - started
        _assert_dependency_down(response)
        assert 1.0 <= waited < 1.0 + SLACK_SECONDS, waited
        # The cancel asyncpg sends at the timeout may reach the server after the lock is gone,
        # so the statement may have kept the row after all (as any answer lost after a
        # commit): Shippo delivers again, and either way there is one row and one job.
        again = await http.post(URL, content=raw, headers=JSON)
        assert again.status_code == 200, again.text
        assert again.json()["status"] in ("accepted", "duplicate")
    assert await _kept(resources, "9400HOTSLOW") == (1, 1)


@pytest.mark.timeout(120)
async def test_a_database_that_stops_answering_is_a_503_and_the_intake_heals(
    settings, resources, open_client
):
    raw = json.dumps(track_updated("9400HOTDOWN", "TRANSIT")).encode()
    async with _app_behind_proxy(
        settings, open_client, db_connect_timeout_seconds=2, db_statement_timeout_ms=1000
    ) as (http, proxy):
        warm = json.dumps(track_updated("9400HOTWARM2", "TRANSIT")).encode()
        assert (await http.post(URL, content=warm, headers=JSON)).status_code == 200
        proxy.black_hole()
        started = time.monotonic()
        _assert_dependency_down(await http.post(URL, content=raw, headers=JSON))
        assert time.monotonic() - started < 2.0 + 1.0 + SLACK_SECONDS
        proxy.cut()
        _assert_dependency_down(await http.post(URL, content=raw, headers=JSON))
        proxy.restore()
        back = await http.post(URL, content=raw, headers=JSON)
        assert back.status_code == 200 and back.json()["status"] == "accepted", back.text
    assert await _kept(resources, "9400HOTDOWN") == (1, 1)


@pytest.mark.timeout(120)
async def test_a_connection_that_died_while_idle_costs_no_error_and_no_second_row(
    settings, resources, open_client
):
    async with _app_behind_proxy(settings, open_client) as (http, proxy):
        first = json.dumps(track_updated("9400HOTIDLE1", "TRANSIT")).encode()
        assert (await http.post(URL, content=first, headers=JSON)).status_code == 200
        opened = proxy.accepted
        proxy.cut()
        proxy.restore()
        raw = json.dumps(track_updated("9400HOTIDLE2", "TRANSIT")).encode()
        again = await http.post(URL, content=raw, headers=JSON)
        assert again.status_code == 200 and again.json()["status"] == "accepted", again.text
        assert proxy.accepted > opened  # answered on a fresh connection
    assert await _kept(resources, "9400HOTIDLE2") == (1, 1)
    async with resources.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookInbox)) == 2
