"""The red team on the webhook intake's group commit (refit/shipping/intake_batch.py,
commit 6b2c14c): deliveries arriving while this process's statement is out go together in the
next one. Attacked as a stranger (hostile and odd bodies, duplicates mixed with unreadable and
jsonb-refused bodies in one batch, more than MAX_BATCH at once), as the carrier (one event
delivered many times at once to two processes, shared keys in opposite orders, an outage with
hung-up deliveries) and as an insider (the batcher's life: hang-ups, a cancelled batcher task,
a backlog behind an outage, the registry of batchers). Each test names the attack and asserts
the refusal. Three were findings, fixed in the commit after it: a backlog behind an outage
waited a statement timeout per 200 deliveries; a batcher task cancelled before it ran left the
intake stopped; the registry kept every hot path alive. The hang-ups, the outages and the
batcher's life are in test_attack_intake_batcher.py, which uses the helpers here."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import pytest
from sqlalchemy import text

from refit import resources as current
from refit.hot_path import HotPath
from refit.shipping import webhooks
from refit.shipping.intake_batch import MAX_BATCH, Delivery, IntakeBatcher, batcher_for
from refit.shipping.webhooks import HANDLE_TASK
from tests.resilience.test_db_timeouts import (
    _app_with,
)
from tests.shipping.helpers import inbox_locked
from tests.shipping.test_intake_batch import _IN_INTAKE, _batched, _scalar
from tests.shipping.test_webhook_hot_path import JSON, URL
from tests.shipping.test_webhooks import track_updated

# --- helpers --------------------------------------------------------------------------------


def _raw(number: str, **extra: Any) -> bytes:
    body = track_updated(number, "TRANSIT")
    body["data"].update(extra)
    return json.dumps(body).encode()


async def _until(what: str, check, seconds: float = 20) -> None:
    """Polls an observable condition with a deadline (never a sleep standing in for it)."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


async def _lock_waiters(resources, n: int) -> bool:
    found = await _scalar(resources, _IN_INTAKE + " AND wait_event_type = 'Lock'")
    return bool(found >= n)


async def _post(http, raw: bytes, request_id: str | None = None):
    headers = {**JSON, **({"X-Request-ID": request_id} if request_id else {})}
    return await http.post(URL, content=raw, headers=headers)


def _arrival(batcher: IntakeBatcher) -> list[str]:
    """The request ids of the deliveries waiting, in arrival order (the batch's order)."""
    return [json.loads(w.delivery.origin)["_origin"]["request_id"] for w in batcher._waiting]


async def _inbox(resources) -> list[dict[str, Any]]:
    """Every row with its jobs: (key, body, raw, error, xmin, [job origins' request ids])."""
    async with resources.sessionmaker() as session:
        found = await session.execute(
            text(
                "SELECT w.dedupe_key, w.body::text AS body, w.raw_body, w.error, w.xmin::text,"
                " w.test, array_remove(array_agg(j.args -> '_origin' ->> 'request_id'), NULL)"
                "  AS origins, count(j.id) AS jobs"
                " FROM webhook_inbox w LEFT JOIN procrastinate_jobs j"
                "  ON j.task_name = :task AND j.args ->> 'inbox_id' = w.id::text"
                " GROUP BY w.id ORDER BY w.dedupe_key"
            ),
            {"task": HANDLE_TASK},
        )
        rows = [dict(r._mapping) for r in found.all()]
        orphans = await session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs j WHERE j.task_name = :task AND NOT"
                " EXISTS (SELECT 1 FROM webhook_inbox w WHERE j.args ->> 'inbox_id' = w.id::text)"
            ),
            {"task": HANDLE_TASK},
        )
    assert orphans == 0, "a job without its row"
    for row in rows:  # a job iff the row is readable, never two
        assert row["jobs"] == (1 if row["error"] is None else 0), row
    return rows


def _delivery(raw: bytes, request_id: str) -> Delivery:
    """What the intake hands the batcher for `raw` (webhooks._keep), for a named request."""
    kept = webhooks.delivery(raw, *webhooks.parse(raw))
    return dataclasses.replace(kept, origin=json.dumps({"_origin": {"request_id": request_id}}))


class _Spy:
    """Counts a hot path's writes and records what each raised."""

    def __init__(self, hot_path: HotPath) -> None:
        self.statements: list[int] = []  # deliveries in each statement sent
        self.raised: list[BaseException] = []
        write = hot_path.write

        async def spied(statement: str, *args: Any) -> Any:
            self.statements.append(len(next(a for a in args if isinstance(a, list))))
            try:
                return await write(statement, *args)
            except BaseException as exc:
                self.raised.append(exc)
                raise

        hot_path.write = spied  # type: ignore[method-assign]


# --- a stranger's bodies, all in one batch ---------------------------------------------------


@pytest.mark.timeout(120)
async def test_hostile_bodies_mixed_in_one_batch_each_keep_their_own_row_and_origin(
    settings, resources, open_client
):
    """Attack: one batch holding, in this order, a readable event whose text spells the
    statement's placeholders; the same bytes unreadable twice; the event again with other
    data; a body jsonb refuses, twice; JSON that is no webhook; odd types where strings are
    expected; a transaction_updated; an event named like a digest key ("sha256") whose key
    ends in a digest. Refusal: each answered as if alone (first arrival kept, the rest
    `duplicate`; refused and unreadable bodies `kept`, without a job); each kept row holds the
    exact bytes of the delivery that was kept and its job that request's id, no other's;
    one row per key, one job per readable row, nothing else."""
    placeholders = "%(keys)s %(origins)s $1 $7 {defer} ); DROP TABLE webhook_inbox; --"
    readable = _raw("9400MIXA", metadata=placeholders)
    again = _raw("9400MIXA", metadata="the second delivery's data")
    junk = b"not json %(bodies)s $2"
    refused = b'{"event": "track_updated", "data": {"tracking_number": "9400MIXR", "x": 1e999999}}'
    odd = json.dumps(
        {
            "event": "track_updated",
            "test": "yes",
            "data": {"tracking_number": 12345, "carrier": ["x"], "tracking_status": "str"},
        }
    ).encode()
    txn = json.dumps(
        {"event": "transaction_updated", "test": False, "data": {"object_id": "tx_%(raws)s"}}
    ).encode()
    digestish = json.dumps({"event": "sha256", "data": {}}).encode()
    sent = {
        "r0": readable,
        "r1": junk,
        "r2": again,
        "r3": refused,
        "r4": junk,
        "r5": refused,
        "r6": b"[1, 2, 3]",
        "r7": odd,
        "r8": txn,
        "r9": digestish,
    }
    async with _app_with(settings, open_client, db_seller_read_pool_size=2) as http:
        batcher = batcher_for(current.current().hot_path)
        async with inbox_locked(resources):
            first = asyncio.create_task(_post(http, _raw("9400MIX0"), "first"))
            await _until("the first out", lambda: _lock_waiters(resources, 1))
            rest = {}
            for rid, raw in sent.items():  # one at a time: the arrival order is the given one
                rest[rid] = asyncio.create_task(_post(http, raw, rid))
                await _until(f"{rid} waiting", lambda: _batched(batcher, len(rest)))
            assert _arrival(batcher) == list(sent)
        answers = {rid: await task for rid, task in rest.items()}
        assert (await first).json() == {"status": "accepted"}
    status = {rid: (a.status_code, a.json()["status"]) for rid, a in answers.items()}
    assert sorted([status["r3"], status["r5"]]) == [(200, "duplicate"), (200, "kept")]
    del status["r3"], status["r5"]
    assert status == {
        "r0": (200, "accepted"),
        "r1": (200, "kept"),
        "r2": (200, "duplicate"),
        "r4": (200, "duplicate"),
        "r6": (200, "kept"),
        "r7": (200, "accepted"),
        "r8": (200, "accepted"),
        "r9": (200, "accepted"),
    }
    rows = await _inbox(resources)
    assert len({r["dedupe_key"] for r in rows}) == len(rows) == 8
    by_origin = {r["origins"][0]: r for r in rows if r["origins"]}
    assert set(by_origin) == {"first", "r0", "r7", "r8", "r9"}
    for rid in ("r0", "r7", "r8", "r9"):  # the kept delivery's own bytes, verbatim
        assert json.loads(by_origin[rid]["body"]) == json.loads(sent[rid]), rid
        assert by_origin[rid]["raw_body"] is None and by_origin[rid]["error"] is None
    assert json.loads(by_origin["r0"]["body"])["data"]["metadata"] == placeholders
    assert by_origin["r7"]["test"] is None and by_origin["r8"]["test"] is False
    assert by_origin["r9"]["dedupe_key"].startswith("sha256:sha256:")
    unreadable = sorted((r["raw_body"], r["error"].split(":")[0]) for r in rows if r["error"])
    assert unreadable == sorted(
        [
            ("[1, 2, 3]", "not a Shippo webhook"),
            (junk.decode(), "not JSON"),
            (refused.decode(), "not storable as jsonb"),
        ]
    )


@pytest.mark.timeout(180)
async def test_more_than_max_batch_at_once_with_duplicates_is_each_event_once_first_arrival(
    settings, resources, open_client
):
    """Attack: MAX_BATCH + 30 deliveries at once behind a statement out (130 events, 100
    delivered twice, the copies spread so some pairs share a batch and some straddle two).
    Refusal: at most MAX_BATCH in one statement (three transactions: the first alone, 200,
    the rest); per event exactly one `accepted`, the first copy to arrive, its job carrying
    that request's id; one row and one job per event."""
    # 200 in the first batch: 115 events, 85 of them twice; then 30: 15 of those events'
    # second copies (straddling two batches) and 15 events first seen there.
    events = 130
    order = [*range(115), *range(85), *range(85, 100), *range(115, 130)]
    async with _app_with(settings, open_client, db_seller_read_pool_size=2) as http:
        batcher = batcher_for(current.current().hot_path)
        async with inbox_locked(resources):
            first = asyncio.create_task(_post(http, _raw("9400BIG-FIRST"), "first"))
            await _until("the first out", lambda: _lock_waiters(resources, 1))
            tasks = {
                f"q{n}": asyncio.create_task(_post(http, _raw(f"9400BIG{i:03}"), f"q{n}"))
                for n, i in enumerate(order)
            }
            await _until("all waiting", lambda: _batched(batcher, len(tasks)), seconds=60)
            arrival = _arrival(batcher)
        answers = {rid: await task for rid, task in tasks.items()}
        assert (await first).status_code == 200
    event_of = {f"q{n}": i for n, i in enumerate(order)}
    first_arrival: dict[int, str] = {}
    for rid in arrival:
        first_arrival.setdefault(event_of[rid], rid)
    expected = {
        rid: "accepted" if first_arrival[event_of[rid]] == rid else "duplicate" for rid in tasks
    }
    got = {rid: (a.status_code, a.json()["status"]) for rid, a in answers.items()}
    assert got == {rid: (200, s) for rid, s in expected.items()}
    rows = [r for r in await _inbox(resources) if "BIG-FIRST" not in r["dedupe_key"]]
    assert len(rows) == events
    assert sorted(r["origins"][0] for r in rows) == sorted(first_arrival.values())
    # The first alone, then at most MAX_BATCH per transaction: two more here.
    by_xmin: dict[str, int] = {}
    for row in rows:
        by_xmin[row["xmin"]] = by_xmin.get(row["xmin"], 0) + 1
    assert len(by_xmin) == 2, by_xmin
    kept_in_first_batch = len({event_of[rid] for rid in arrival[:MAX_BATCH]})
    assert sorted(by_xmin.values()) == sorted([kept_in_first_batch, events - kept_in_first_batch])


# --- the carrier: two processes at once ------------------------------------------------------


@pytest.mark.timeout(120)
async def test_two_processes_batches_with_shared_keys_in_opposite_orders_do_not_deadlock(
    settings, resources
):
    """Attack: two API processes (two hot paths, two batchers) each get the same three events
    in opposite arrival orders while another transaction holds the middle key uncommitted, so
    both statements are in flight at once, one behind the other; then that transaction rolls
    back. Had the rows gone in arrival order, each statement would hold a key the other waits
    for (a deadlock, then the one-by-one fallback). Refusal: each batch is one statement, none
    raises, each event kept once (one `accepted` across both processes), one job each."""
    raws = {n: _raw(f"9400DLK{n}") for n in "AMZ"}
    hot_paths = [HotPath(settings), HotPath(settings)]
    spies = [_Spy(hp) for hp in hot_paths]
    batchers = [IntakeBatcher(hp) for hp in hot_paths]
    middle = webhooks.parse(raws["M"])[2]
    try:
        async with resources.sessionmaker() as holder:
            await holder.execute(
                text(
                    "INSERT INTO webhook_inbox (id, provider, dedupe_key, raw_body, error)"
                    " VALUES (gen_random_uuid(), 'shippo', :key, 'held', 'held')"
                ),
                {"key": middle},
            )
            one = asyncio.gather(*(batchers[0].keep(_delivery(raws[n], f"p0-{n}")) for n in "ZMA"))
            two = asyncio.gather(*(batchers[1].keep(_delivery(raws[n], f"p1-{n}")) for n in "AMZ"))
            await _until("both statements waiting", lambda: _lock_waiters(resources, 2))
            await holder.rollback()
        results = list(zip(*(await one, await two), strict=True))
    finally:
        for hp in hot_paths:
            await hp.close()
    assert [s.statements for s in spies] == [[3], [3]] and not any(s.raised for s in spies)
    for kept in results:  # per event: one row id, and None (duplicate) for the other
        assert sum(r is not None for r in kept) == 1, results
    rows = await _inbox(resources)
    assert len(rows) == 3 and all(r["jobs"] == 1 for r in rows)


@pytest.mark.timeout(120)
async def test_a_redelivery_storm_of_one_event_into_two_processes_is_one_row_one_job(
    settings, resources
):
    """Attack: one event delivered 2 x 101 times at the same moment, half to each of two
    processes' batchers, with a burst of other events in between. Refusal: exactly one of the
    202 is kept (a row id), every other is `duplicate`; one row, one job; nothing raised."""
    raw = _raw("9400STORM")
    hot_paths = [HotPath(settings), HotPath(settings)]
    spies = [_Spy(hp) for hp in hot_paths]
    batchers = [IntakeBatcher(hp) for hp in hot_paths]
    try:
        calls = []
        for i in range(101):
            for p, batcher in enumerate(batchers):
                calls.append(batcher.keep(_delivery(raw, f"p{p}-{i}")))
                if i % 10 == 0:
                    calls.append(batcher.keep(_delivery(_raw(f"9400OTHER{p}{i}"), f"o{p}-{i}")))
        results = await asyncio.gather(*calls)
    finally:
        for hp in hot_paths:
            await hp.close()
    assert not any(s.raised for s in spies)
    rows = await _inbox(resources)
    stormed = [r for r in rows if "9400STORM" in r["dedupe_key"]]
    assert len(stormed) == 1 and stormed[0]["jobs"] == 1
    assert len(rows) == 1 + 2 * 11
    assert sum(r is not None for r in results) == len(rows)
