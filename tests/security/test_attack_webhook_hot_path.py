"""The red team on the webhook intake's one statement on the hot path's asyncpg connections
(refit/hot_path.py HotPath.write and positional, refit/connection_stack.py). Attacked as a
stranger (bodies jsonb refuses, odd types where strings are expected, placeholder-looking
text, huge keys), as the carrier (one event delivered many times at once, some deliveries
hung up mid-statement) and as an insider (a seller's read sharing the intake's connection,
the job's arguments, PGAPPNAME). Each test names the attack and asserts the refusal."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import string
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import select, text

from refit import queue
from refit import resources as current
from refit.hot_path import positional
from refit.models.shipping import WebhookInbox
from refit.settings import DEV_WEBHOOK_TOKEN
from refit.shipping import intake_batch
from refit.shipping.webhooks import HANDLE_TASK
from tests.orders.helpers import place_order
from tests.resilience.test_db_timeouts import _app_with
from tests.shipping.helpers import inbox_locked
from tests.shipping.test_webhooks import track_updated

URL = f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}"
JSON = {"Content-Type": "application/json"}
_IN_INTAKE = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND pid <> pg_backend_pid() AND query LIKE '%INSERT INTO webhook_inbox%'"
)


async def _post(http, body: Any, **headers: str):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(URL, content=raw, headers={**JSON, **headers})


async def _accepted(http, number: str) -> None:
    answer = await _post(http, track_updated(number, "TRANSIT"))
    assert answer.status_code == 200 and answer.json() == {"status": "accepted"}, answer.text


async def _jobs(resources) -> list[tuple[Any, ...]]:
    async with resources.sessionmaker() as session:
        found = await session.execute(
            text("SELECT args, queue_name, priority, lock, queueing_lock FROM procrastinate_jobs")
        )
    return [tuple(r) for r in found.all()]


async def _rows(resources) -> list[WebhookInbox]:
    async with resources.sessionmaker() as session:
        return list((await session.scalars(select(WebhookInbox))).all())


async def _until(resources, sql: str, check) -> None:
    """Polls an observable condition of the server (a backend waiting on a lock, gone)."""
    for _ in range(500):
        async with resources.sessionmaker() as session:
            if check(await session.scalar(text(sql))):
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {sql}")


async def _lock_waiters(resources, n: int) -> None:
    await _until(resources, _IN_INTAKE + " AND wait_event_type = 'Lock'", lambda c: c >= n)


async def _no_intake_running(resources) -> None:
    await _until(resources, _IN_INTAKE + " AND state = 'active'", lambda c: c == 0)


def _noise(length: int, seed: int) -> str:
    return "".join(random.Random(seed).choices(string.ascii_letters + string.digits, k=length))


# --- a stranger's bodies -------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_bodies_jsonb_refuses_are_kept_or_4xx_and_the_one_connection_stays_usable(
    settings, resources, open_client
):
    """Attack: valid JSON jsonb cannot hold (numbers beyond numeric, \\u0000, a lone
    surrogate, deep nesting), on a hot path of ONE connection. Refusal: `kept` or a 4xx,
    never a 500; after each, a normal delivery on that same connection is `accepted`."""
    raws = [
        b'{"event": "track_updated", "data": {"tracking_number": "A1", "x": 1e999999}}',
        b'{"event": "track_updated", "data": {"tracking_number": "A2", "x": -1e-999999}}',
        b'{"event": "transaction_updated", "data": {"object_id": "t1", "x": [1e400]}}',  # numeric
        b'{"event": "batch_created", "data": {"n": 1E+131073}}',
        b'{"event": "track_updated", "data": {"tracking_number": "A3", "x": "\\u0000"}}',
        b'{"event": "track_updated", "data": {"tracking_number": "A4\\udfff"}}',
        b'{"event": "x", "data": {"y": ' + b'{"a":' * 80 + b"1" + b"}" * 80 + b"}}",
    ]
    async with _app_with(settings, open_client, db_seller_read_pool_size=1) as http:
        stack = current.current().hot_path._connections
        for i, raw in enumerate(raws):
            answer = await _post(http, raw)
            assert answer.status_code != 500, raw[:70]
            if answer.status_code == 200:
                assert answer.json()["status"] in ("kept", "accepted"), (raw[:70], answer.text)
            else:
                assert 400 <= answer.status_code < 500, (raw[:70], answer.text)
            await _accepted(http, f"9400AFTER{i}")
            assert stack._out == 0 and len(stack._idle) == 1
    rows = await _rows(resources)
    kept = [r for r in rows if r.error is not None]
    assert all(r.body is None and r.raw_body for r in kept)
    assert len(await _jobs(resources)) == len(rows) - len(kept) > len(raws)


@pytest.mark.parametrize(
    "where", ["event", "tracking_number", "object_id"], ids=["event", "tracking", "transaction"]
)
async def test_a_huge_event_name_or_tracking_number_is_kept_or_4xx_never_500(
    client, resources, where
):
    """Attack: an event name, tracking number or transaction id of 6,000 random characters
    (well inside the 1 MiB body limit): the dedupe key built from it is past what a btree
    index entry may hold (2,704 bytes), PostgreSQL answers 54000, not a DataError. Refusal:
    2xx or 4xx, never a 500; the hot path still accepts the next delivery."""
    huge = _noise(6000, seed=len(where))
    if where == "event":
        body: dict[str, Any] = {"event": huge, "data": {}}
    elif where == "tracking_number":
        body = track_updated(huge, "TRANSIT")
    else:
        body = {"event": "transaction_updated", "data": {"object_id": huge, "status": "SUCCESS"}}
    answer = await _post(client, body)
    assert answer.status_code != 500, answer.text
    assert answer.status_code < 300 or 400 <= answer.status_code < 500, answer.text
    await _accepted(client, "9400AFTERHUGE")


async def test_odd_types_and_placeholder_text_in_the_body_are_only_data(client, resources):
    """Attack: `test` as a string, number, object; tracking numbers as a number, list and
    object; an event name that is not a string; keys and values spelling `%(name)s` and `$1`;
    10,000 keys. Refusal: each body kept exactly as sent, `test` only when a JSON boolean,
    provider and event as the intake sets them, one job per accepted row naming it."""
    placeholders = {"%(provider)s": "%(event)s", "$1": "$2", "%(key)s": "%%(raw)s'; --"}
    cases: list[tuple[dict[str, Any], str, bool | None, str]] = [
        ({"event": "track_updated", "test": "true", "data": {"tracking_number": 9400}},
         "accepted", None, "track_updated"),
        ({"event": "track_updated", "test": 1, "data": {"tracking_number": [1, "x"]}},
         "accepted", None, "track_updated"),
        ({"event": "track_updated", "test": {"a": 1}, "data": {"tracking_number": {"a": 1}}},
         "accepted", None, "track_updated"),
        ({"event": "track_updated", "test": False, "data": {"tracking_number": 0}},
         "kept", None, "track_updated"),
        ({"event": 12, "test": True, "data": placeholders}, "accepted", True, "12"),
        ({"event": "%(event)s", "data": {"tracking_number": "%(key)s"}},
         "accepted", None, "%(event)s"),
        ({"event": "track_updated", "data": {"tracking_number": "K", **placeholders,
          **{f"k{i}": i for i in range(10_000)}}}, "accepted", None, "track_updated"),
    ]  # fmt: skip
    for body, status, test, event in cases:
        answer = await _post(client, body)
        assert answer.status_code == 200 and answer.json() == {"status": status}, answer.text
        async with resources.sessionmaker() as session:
            row = (
                await session.scalars(
                    select(WebhookInbox).order_by(WebhookInbox.received_at.desc()).limit(1)
                )
            ).one()
        assert (row.provider, row.event) == ("shippo", event)
        assert row.test is test, (body.get("test"), row.test)
        if status == "accepted":
            assert row.body == body and row.raw_body is None and row.error is None
        else:
            assert row.body is None and row.error
    rows = await _rows(resources)
    accepted = {str(r.id) for r in rows if r.error is None}
    assert sorted(args["inbox_id"] for args, *_ in await _jobs(resources)) == sorted(accepted)


def test_positional_numbers_only_the_statements_placeholders():
    """Attack: data that spells the placeholders. Refusal: `positional` rewrites the intake's
    statement text only; every value goes as a parameter, as given, none left as `%(`."""
    statement, job_params = intake_batch.statement_and_job_params()
    arrays = ("events", "keys", "tests", "bodies", "raws", "errors", "origins")
    params = {**job_params, **{n: [f"%({n})s"] for n in arrays}, "provider": "%(provider)s"}
    sql, args = positional(statement, params)
    assert "%(" not in sql and "%s" not in sql
    names = sorted({*params})
    assert len(args) == len(names) and f"${len(names)}" in sql and f"${len(names) + 1}" not in sql
    order = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
    assert all(a is params[n] for a, n in zip(args, order, strict=True))


# --- the carrier: one event many times, some hung up ---------------------------------------


@pytest.mark.timeout(120)
async def test_one_event_many_at_once_some_hung_up_mid_statement_is_one_row_one_job(
    settings, resources, open_client
):
    """Attack: the same event delivered 9 times on a hot path of 4 connections, the inbox
    locked so the first delivery's statement waits on it, and 8 more at once, which wait for
    that statement (the intake's group commit: intake_batch); 5 of the 9, the first among
    them, hang up
    (cancelled) while so, then the lock goes. Refusal: at most one `accepted` among the
    answers, one connection used and none left handed out, half-read or closed, and after
    the carrier's redelivery exactly one inbox row and one `shipping.handle_webhook` job."""
    raw = json.dumps(track_updated("9400HUNGUP", "TRANSIT")).encode()
    async with _app_with(settings, open_client, db_seller_read_pool_size=4) as http:
        stack = current.current().hot_path._connections
        batcher = intake_batch.batcher_for(current.current().hot_path)
        await asyncio.gather(*(_accepted(http, f"9400WARM{i}") for i in range(4)))
        async with inbox_locked(resources):
            tasks = [asyncio.create_task(_post(http, raw))]
            await _lock_waiters(resources, 1)
            tasks += [asyncio.create_task(_post(http, raw)) for _ in range(8)]
            await _until_batched(batcher, 8)
            assert stack._out == 1 and not stack._waiters
            for task in tasks[::2]:
                task.cancel()
            await asyncio.gather(*tasks[::2], return_exceptions=True)
        answers = [await task for task in tasks[1::2]]
        again = await _post(http, raw)
        await _no_intake_running(resources)
        assert stack._out == 0 and not stack._waiters and len(stack._idle) <= 4
        assert all(not c.is_closed() for c, _ in stack._idle)
    statuses = [a.json()["status"] for a in [*answers, again]]
    assert all(a.status_code == 200 for a in [*answers, again]), statuses
    assert statuses.count("accepted") <= 1 and set(statuses) <= {"accepted", "duplicate"}
    rows = [r for r in await _rows(resources) if r.body["data"]["tracking_number"] == "9400HUNGUP"]
    assert len(rows) == 1
    jobs = [args for args, *_ in await _jobs(resources) if args["inbox_id"] == str(rows[0].id)]
    assert len(jobs) == 1


async def _until_batched(batcher: intake_batch.IntakeBatcher, n: int) -> None:
    for _ in range(500):
        if len(batcher._waiting) == n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never {n} deliveries waiting for the statement out")


# --- an insider: the seller's reads on the same connections --------------------------------

_RECORD_WHO = """
CREATE TABLE intake_who (who text, role text, claims text);
CREATE FUNCTION record_intake_who() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO intake_who VALUES (current_user, current_setting('role'),
    coalesce(current_setting('request.jwt.claims', true), ''));
  RETURN NEW;
END $$;
CREATE TRIGGER record_intake_who BEFORE INSERT ON webhook_inbox
  FOR EACH ROW EXECUTE FUNCTION record_intake_who();
"""


@pytest.mark.timeout(120)
async def test_the_intake_and_a_sellers_read_share_one_connection_and_nothing_crosses(
    settings, resources, make_user, open_client
):
    """Attack: on a hot path of ONE connection, a seller's read (which takes the seller's
    role and claims with set_config(..., true)), then an intake, then another seller's read;
    then an intake hung up mid-statement and the reads again. Refusal: the intake runs as
    the service with no claims (a trigger records who inserted), on that same connection;
    each seller sees only their own orders; the hung-up intake's statement finishes (its
    row kept: the intake's group commit sends it in a task of its own) and its connection,
    given back whole, serves the next reads, which still see only their own."""
    async with resources.sessionmaker() as session, session.begin():
        login = await session.scalar(text("SELECT current_user"))
        for ddl in _RECORD_WHO.split(";\nCREATE"):
            await session.execute(text(ddl if ddl.startswith("\n") else "CREATE" + ddl))
    alice, bob = await make_user(), await make_user()
    async with _app_with(settings, open_client, db_seller_read_pool_size=1) as http:
        stack = current.current().hot_path._connections
        hers = (await place_order(http, resources, alice))["id"]
        his = (await place_order(http, resources, bob))["id"]

        async def reads_are_their_own() -> None:
            assert (await http.get(f"/api/orders/{hers}", headers=alice.headers)).status_code == 200
            assert (await http.get(f"/api/orders/{hers}", headers=bob.headers)).status_code == 404
            assert (await http.get(f"/api/orders/{his}", headers=alice.headers)).status_code == 404
            page = (await http.get("/api/orders", headers=bob.headers)).json()
            assert [o["id"] for o in page["items"]] == [his]

        await reads_are_their_own()
        ((connection, _),) = stack._idle
        await _accepted(http, "9400SHARED")
        assert [c for c, _ in stack._idle] == [connection]  # the same connection
        await reads_are_their_own()
        await _accepted(http, "9400SHARED2")

        async with inbox_locked(resources):
            hung = asyncio.create_task(_post(http, track_updated("9400HUNG1", "TRANSIT")))
            await _lock_waiters(resources, 1)
            hung.cancel()
            with pytest.raises(asyncio.CancelledError):
                await hung
            # The hang-up leaves the statement to finish (intake_batch): out, on that one.
            assert stack._out == 1 and not stack._idle and not connection.is_closed()
        await _no_intake_running(resources)
        for _ in range(500):
            if stack._out == 0:
                break
            await asyncio.sleep(0.02)
        assert [c for c, _ in stack._idle] == [connection]  # given back whole
        await reads_are_their_own()
        assert [c for c, _ in stack._idle] == [connection]
        # The hung-up delivery's row was kept: the carrier's redelivery is a duplicate.
        again = await _post(http, track_updated("9400HUNG1", "TRANSIT"))
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
    async with resources.sessionmaker() as session:
        who = (await session.execute(text("SELECT who, role, claims FROM intake_who"))).all()
    assert len(who) >= 3 and {tuple(w) for w in who} == {(login, "none", "")}


async def test_the_jobs_arguments_are_the_row_and_the_origin_whatever_the_request_id(
    client, resources
):
    """Attack: a request id that spells JSON meant to replace the job's `inbox_id`. Refusal:
    the job's args are exactly the row's id and the origin (the request id as sent), on the
    task's own queue, priority and lock, with no queueing lock."""
    evil = '", "inbox_id": "0\\"}, {"inbox_id": 1} --'
    answer = await _post(client, track_updated("9400ORIGIN", "TRANSIT"), **{"X-Request-ID": evil})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == evil
    (row,) = await _rows(resources)
    ((args, queue_name, priority, lock, queueing_lock),) = await _jobs(resources)
    assert args["inbox_id"] == str(row.id) and set(args) == {"inbox_id", "_origin"}
    assert args["_origin"]["request_id"] == evil
    job = queue._job_defaults(HANDLE_TASK)
    assert (queue_name, priority, lock, queueing_lock) == (job.queue, job.priority, job.lock, None)


_APP_NAME_PROBE = """
import asyncio, sys
import psycopg
from refit import db
from refit.hot_path import HotPath
from refit.settings import Settings

async def main():
    dsn, redis = sys.argv[1], sys.argv[2]
    settings = Settings(_env_file=None, env="test", database_url=dsn, redis_url=redis,
                        public_url="http://testserver", data_dir=sys.argv[3])
    path = HotPath(settings)
    try:
        found = await path.row("SELECT current_setting('application_name') AS name")
    finally:
        await path.close()
    async with await psycopg.AsyncConnection.connect(db.libpq_url(dsn)) as pg:
        libpq = (await (await pg.execute("SELECT current_setting('application_name')"))
                 .fetchone())[0]
    print(found["name"], libpq)

asyncio.run(main())
"""


@pytest.mark.parametrize("in_url", [False, True], ids=["env-only", "url-names-it-too"])
def test_the_hot_paths_application_name_is_the_one_libpq_gives(settings, tmp_path, in_url):
    """Attack (an operator's view): PGAPPNAME set, and the database URL naming an
    application_name of its own. Refusal: the hot path's connections carry the name libpq
    (the engine's psycopg) gives, where the URL's wins over PGAPPNAME."""
    dsn = settings.database_url
    assert dsn
    if in_url:
        dsn += ("&" if "?" in dsn else "?") + "application_name=from-url"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFIT_")}
    env["PGAPPNAME"] = "from-env"
    done = subprocess.run(
        [sys.executable, "-c", _APP_NAME_PROBE, dsn, settings.redis_url, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    hot, libpq = done.stdout.split()
    assert libpq == ("from-url" if in_url else "from-env")
    assert hot == libpq
