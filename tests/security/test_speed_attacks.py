"""The red team on the speed changes (issue 25): the fast lane, the prepared hot read, the
batched rate-limit scripts, the shared stream reads and the one-message webhook intake,
attacked as a stranger, a seller and a second seller. Each test names the attack and asserts
the refusal it meets (the `open_client` fixture fails on any 500)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
import redis.exceptions
from redis.asyncio import Redis
from sqlalchemy import select, text

from refit import jwts, one_message, ratelimit
from refit.auth import tokens
from refit.errors import ProblemError
from refit.events.listener import SharedReads, Subscription
from refit.models import OrderStatus
from refit.models.shipping import WebhookInbox
from refit.resources import Resources
from refit.script_batch import ScriptBatch
from refit.settings import DEV_WEBHOOK_TOKEN
from refit.shipping.webhooks import HANDLE_TASK
from tests.events.sse import Event, open_stream
from tests.orders.helpers import operator_move, place_order
from tests.orders.one_connection import list_orders, one_connection, read_order  # noqa: F401
from tests.orders.test_fast_lane import _SAME_HEADERS, _clients
from tests.serving import serving
from tests.shipping.test_webhooks import track_updated

WEBHOOK = f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}"
JSON = {"Content-Type": "application/json"}


# --- the fast lane -------------------------------------------------------------------------


def _token(resources: Resources, user_id: uuid.UUID, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": "authenticated",
        "aud": tokens.AUDIENCE,
        "iss": resources.settings.public_url,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        **changes,
    }
    return jwts.encode(jwts.Key.of(resources.settings), claims)


async def _revoked(resources: Resources, token: str) -> None:
    claims = tokens.decode_access_token(resources.settings, token)
    async with resources.sessionmaker() as session, session.begin():
        await tokens.revoke(session, resources.redis, resources.settings, claims)


async def test_the_lane_answers_odd_requests_as_fastapi_does(
    client, resources, open_client, make_user
):
    """Attack: a stranger, a seller and a second seller at the lane's edges (revoked, expired,
    wrong-audience and forged tokens, another seller's order, trailing and double slashes,
    encoded ids, HEAD and OPTIONS, odd limits, two Authorization headers). Refusal: each
    answer is FastAPI's own (status, body, caching and CORS headers), never another seller's
    order."""
    seller, other = await make_user(), await make_user()
    mine = (await place_order(client, resources, seller))["id"]
    theirs = (await place_order(client, resources, other))["id"]
    revoked = _token(resources, seller.id)
    await _revoked(resources, revoked)

    def bearer(token: str) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {token}")]

    me = bearer(seller.token)
    cases: list[tuple[str, str, list[tuple[str, str]]]] = [
        ("GET", f"/api/orders/{mine}", bearer(revoked)),
        ("GET", f"/api/orders/{mine}", bearer(_token(resources, seller.id, exp=1, iat=0))),
        ("GET", f"/api/orders/{mine}", bearer(_token(resources, seller.id, aud="other"))),
        ("GET", f"/api/orders/{mine}", bearer(_token(resources, seller.id, role="service_role"))),
        ("GET", f"/api/orders/{mine}", bearer(_token(resources, seller.id, sub="not-a-uuid"))),
        ("GET", f"/api/orders/{mine}", bearer(seller.token + "x")),
        ("GET", f"/api/orders/{mine}", [("Authorization", f"bearer {seller.token}")]),
        ("GET", f"/api/orders/{mine}", [("Authorization", f"Bearer  {seller.token}")]),
        ("GET", f"/api/orders/{mine}", [("Authorization", "Basic x"), *me]),
        ("GET", f"/api/orders/{mine}", [*me, ("Authorization", "Bearer forged")]),
        ("GET", f"/api/orders/{theirs}", [*me, *bearer(other.token)]),
        ("GET", f"/api/orders/{theirs}", me),
        ("GET", f"/api/orders/{theirs}/", me),
        ("GET", f"/api/orders//{theirs}", me),
        ("GET", f"/api/orders/{mine}/", me),
        ("GET", f"/api/orders/{mine}%20", me),
        ("GET", f"/api/orders/%7B{mine}%7D", me),
        ("GET", f"/api/orders/{mine.replace('-', '')}", me),
        ("GET", f"/api/orders/urn:uuid:{mine}", me),
        ("GET", "/api/orders/" + "%" + "2e%2e", me),
        ("GET", f"/api/orders/{mine}?x=1", me),
        ("HEAD", f"/api/orders/{mine}", me),
        ("OPTIONS", f"/api/orders/{mine}", me),
        ("GET", "/api/orders/", me),
        ("GET", "/api/orders?limit=-1", me),
        ("GET", "/api/orders?limit=99999999999999999999", me),
        ("GET", "/api/orders?limit=1&limit=1", me),
        ("GET", "/api/orders?Limit=1", me),
        ("GET", "/api/orders?limit=+1", me),
        ("GET", "/api/orders?limit=1%20", me),
        ("GET", "/api/orders?limit=%31", me),
        ("GET", "/api/orders?limit=1;cursor=x", me),
        ("GET", "/api/orders?cursor=" + "A" * 201, me),
        ("GET", "/api/orders?cursor=" + "A" * 200, me),
        ("GET", "/api/orders?cursor=%FF%FE", me),
        ("GET", "/api/orders?user_id=" + str(other.id), me),
        ("GET", "/api/orders", bearer(revoked)),
        ("GET", "/api/catalog/", []),
        ("GET", "/api/catalog?x=1", []),
        ("HEAD", "/api/catalog", []),
        ("GET", "/api/flags", bearer(revoked)),
        ("GET", "/api/flags/", me),
    ]
    cors = [("Origin", "http://evil.example")]
    answered: list[str] = []
    async with _clients(resources, open_client, answered) as (fast, slow):
        for method, path, headers in cases:
            ours = await fast.request(method, path, headers=httpx.Headers([*headers, *cors]))
            plain = await slow.request(method, path, headers=httpx.Headers([*headers, *cors]))
            where = (method, path, headers[:1])
            assert ours.status_code == plain.status_code, where
            assert ours.content == plain.content, where
            for name in (*_SAME_HEADERS, "access-control-allow-origin", "vary"):
                assert ours.headers.get(name) == plain.headers.get(name), (where, name)
            if str(theirs) in path:
                assert ours.status_code != 200, where
        listed = await fast.get("/api/orders?user_id=" + str(other.id), headers=seller.headers)
        assert [o["id"] for o in listed.json()["items"]] == [mine]


async def test_the_lane_without_redis_or_database_is_503_not_500(make_user, open_client_without):
    """Attack: the lane's reads while Redis (revocations, the limit) or PostgreSQL is down.
    Refusal: 503 problem+json (never served with a token whose revocation cannot be
    checked, never a 500)."""
    seller = await make_user()
    for down in ("redis", "database"):
        async with open_client_without(down) as http:
            for path in (f"/api/orders/{uuid.uuid4()}", "/api/orders", "/api/flags"):
                answer = await http.get(path, headers=seller.headers)
                assert answer.status_code == 503, (down, path, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"


# --- the prepared hot read -----------------------------------------------------------------


_WHO = "SELECT current_user AS who, current_setting('request.jwt.claims', true) AS claims"


async def test_one_connection_alternating_sellers_after_cancel_and_discard(
    client,
    resources,
    make_user,
    one_connection,  # noqa: F811
):
    """Attack: seller B's reads on the one pooled connection seller A's reads prepared the
    statement on, alternating past PostgreSQL's five custom plans, with a read cancelled
    mid-flight, a DISCARD ALL and a DEALLOCATE ALL between them. Refusal: B never sees A's
    row, and no read runs as the wrong seller (or as the service)."""
    a, b = await make_user(), await make_user()
    a_order = uuid.UUID((await place_order(client, resources, a))["id"])
    b_order = uuid.UUID((await place_order(client, resources, b))["id"])

    async def detail(user: uuid.UUID, order: uuid.UUID) -> list[uuid.UUID]:
        return await read_order(one_connection, user, order)

    async def listed(user: uuid.UUID, owner: uuid.UUID) -> list[uuid.UUID]:
        return await list_orders(one_connection, user, owner)

    async def check(round_: int) -> None:
        assert await detail(a.id, a_order) == [a_order], round_
        assert await detail(b.id, a_order) == [], round_
        assert await listed(b.id, a.id) == [], round_
        assert await detail(b.id, b_order) == [b_order], round_
        assert await detail(a.id, b_order) == [], round_
        assert await listed(a.id, b.id) == [], round_
        (who,) = await one_message.fetch_as_user(one_connection, b.id, _WHO, {})
        assert who["who"] == "authenticated" and str(b.id) in who["claims"], round_

    for round_ in range(8):
        await check(round_)
        if round_ == 2:
            # A's read cancelled while PostgreSQL runs it (the client went away).
            slow = "SELECT pg_sleep(5), o.id FROM orders o WHERE o.id = %(id)s"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    one_message.fetch_as_user(one_connection, a.id, slow, {"id": a_order}), 0.3
                )
        if round_ in (4, 6):
            async with one_connection.connect() as connection:
                pg = (await connection.get_raw_connection()).driver_connection
                await pg.set_autocommit(True)
                await pg.execute("DISCARD ALL" if round_ == 4 else "DEALLOCATE ALL")
                await pg.set_autocommit(False)
    # Back in the pool as the service, with no seller's claims left on it.
    async with one_connection.connect() as connection:
        who = (await connection.exec_driver_sql(_WHO)).one()
        await connection.rollback()
    assert who[0] != "authenticated" and not who[1]


# --- the batched rate-limit scripts --------------------------------------------------------


async def test_n_plus_one_at_once_get_n_and_two_sellers_never_count_for_each_other(resources):
    """Attack: 11 hits of seller A at the same moment against a limit of 10, batched in one
    pipeline with 11 of seller B. Refusal: exactly 10 of each pass; B's hits are not A's."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())

    async def hit(who: str) -> int:
        try:
            await ratelimit.hit(resources, "10/minute", "attack", who)
        except ProblemError as exc:
            return exc.status
        return 200

    answers = await asyncio.gather(*(hit(who) for _ in range(11) for who in (a, b)))
    by_seller = Counter(zip([a, b] * 11, answers, strict=True))
    assert by_seller == {(a, 200): 10, (a, 429): 1, (b, 200): 10, (b, 429): 1}


async def test_a_batch_with_redis_down_fails_every_caller(settings):
    """Attack: a batch of checks sent while Redis is down. Refusal: every caller in the batch
    hears the error (ratelimit's 503 when it fails closed); none hangs or is let through."""
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        batch = ScriptBatch(dead, "return 1")
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(batch.run(f"k{i}", []) for i in range(7)), return_exceptions=True),
            10,
        )
    finally:
        await dead.aclose()
    assert all(isinstance(o, redis.exceptions.ConnectionError) for o in outcomes), outcomes


async def test_a_script_redis_forgot_counts_each_hit_once(resources):
    """Attack: SCRIPT FLUSH between batches (a Redis restart). Refusal: the runs are sent
    again once: 6 hits at once on a limit of 5 still give 5 passes, not 5 plus re-sent."""
    who = str(uuid.uuid4())
    await ratelimit.hit(resources, "5/minute", "flush", who)
    await resources.redis.script_flush()

    async def hit() -> int:
        try:
            await ratelimit.hit(resources, "5/minute", "flush", who)
        except ProblemError as exc:
            return exc.status
        return 200

    assert Counter(await asyncio.gather(*(hit() for _ in range(5)))) == {200: 4, 429: 1}


# --- the shared stream reads ---------------------------------------------------------------


async def test_a_second_seller_never_joins_anothers_read_of_the_same_order():
    """Attack: seller B's stream on seller A's order id (guessed), woken by the same ring while
    A's read is in flight. Refusal: B gets a read of its own (under its own RLS), never A's
    answer."""
    shared = SharedReads()
    order = uuid.uuid4()
    a, b = uuid.uuid4(), uuid.uuid4()
    release = asyncio.Event()
    calls: list[str] = []

    def read_of(who: str) -> Any:
        async def read() -> str:
            calls.append(who)
            await release.wait()
            return f"{who}'s rows"

        return read

    ring = Subscription()
    ring.wake()
    first = asyncio.ensure_future(shared.read((a, order, None), ring.rung, read_of("a")))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(shared.read((b, order, None), ring.rung, read_of("b")))
    await asyncio.sleep(0)
    release.set()
    assert await first == "a's rows" and await second == "b's rows"
    assert calls == ["a", "b"]


async def test_a_guessed_or_revoked_stream_gets_no_event(resources, make_user):
    """Attack: seller B opens a stream on seller A's order (id guessed), and A's stream keeps
    listening after A's token is revoked while a change commits. Refusal: B is 404; A's
    stream ends without the change (over real sockets, the listener live)."""
    a, b = await make_user(), await make_user()
    async with serving(resources) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        order = await place_order(http, resources, a)
        events = f"/api/orders/{order['id']}/events"
        async with http.stream("GET", events, headers=b.headers) as guessed:
            await guessed.aread()
            assert guessed.status_code == 404, guessed.text
        async with open_stream(http, order["id"], headers=a.headers) as stream:
            first = await stream.next_event()
            assert first.status == "pending"
            await _revoked(resources, a.token)
            await operator_move(resources, order["id"], OrderStatus.PROCESSING_SHIPMENT)
            while (item := await stream.next(timeout=10)) is not None:
                assert not isinstance(item, Event), f"a revoked stream got {item!r}"


# --- the webhook intake --------------------------------------------------------------------


async def _inbox(resources: Resources) -> tuple[list[WebhookInbox], int]:
    async with resources.sessionmaker() as session:
        rows = list((await session.scalars(select(WebhookInbox))).all())
        jobs = await session.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = :t"),
            {"t": HANDLE_TASK},
        )
    return rows, int(jobs or 0)


async def test_hostile_webhook_bodies_are_4xx_or_kept_never_500(client, resources):
    """Attack: bodies PostgreSQL's jsonb cannot hold as Python read them (numbers out of
    numeric's range, NUL and lone surrogate escapes, a BOM, invalid UTF-8, deep nesting, an
    empty body, a huge body). Refusal: a 4xx, or the body kept as unreadable with no job;
    never a 500."""
    raws = [
        b'{"event": "track_updated", "data": {"tracking_number": "1", "x": 1e1000000}}',
        b'{"event": "track_updated", "data": {"tracking_number": "2", "x": 1e-1000000}}',
        b'{"event": "track_updated", "data": {"tracking_number": "3", "x": -1e400}}',
        b'{"event": "x", "data": {"a": 1e999999999999}}',
        b'{"event": "track_updated", "data": {"tracking_number": "4", "x": "\\u0000"}}',
        b'{"event": "track_updated", "data": {"tracking_number": "5", "x": "\\ud800"}}',
        b'{"event": "track_updated", "data": {"tracking_number": "6\\u0000"}}',
        b'\xef\xbb\xbf{"event": "track_updated", "data": {"tracking_number": "7"}}',
        b'{"event": "track_updated", "data": {"tracking_number": "\xed\xa0\x80"}}',
        b'{"event": "x", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"",
        b"null",
        b'{"event": "x", "data": {}}' + b" " * (3 * 1024 * 1024),
    ]
    for raw in raws:
        answer = await client.post(WEBHOOK, content=raw, headers=JSON)
        assert answer.status_code != 500, raw[:80]
        if answer.status_code == 200:
            assert answer.json()["status"] in ("kept", "accepted", "duplicate"), raw[:80]
        else:
            assert 400 <= answer.status_code < 500, (raw[:80], answer.text)
    rows, jobs = await _inbox(resources)
    accepted = [r for r in rows if r.error is None]
    assert jobs == len(accepted)


async def test_one_event_posted_many_times_at_once_is_one_row_and_one_job(client, resources):
    """Attack: one carrier event delivered 12 times at the same moment (and its bytes
    reordered, the same event). Refusal: one row, one job; the others answer `duplicate`."""
    body = track_updated("9400RACE", "TRANSIT")
    raws = [json.dumps(body).encode()] * 6 + [json.dumps(body, indent=1).encode()] * 6
    answers = await asyncio.gather(*(client.post(WEBHOOK, content=r, headers=JSON) for r in raws))
    statuses = Counter(a.json()["status"] for a in answers)
    assert statuses == {"accepted": 1, "duplicate": 11}
    rows, jobs = await _inbox(resources)
    assert len(rows) == 1 and jobs == 1
