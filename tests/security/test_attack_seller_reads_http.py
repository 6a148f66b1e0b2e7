"""The red team on the sellers' reads on asyncpg (refit/hot_path.py, migration 0029) over
HTTP, through the fast lane and through FastAPI's routes alike: cursors made up or taken from
another seller, operator-only columns, big limits, a crash inside the lane, and N+1 requests
at once on the per-seller limit. Each test names the attack and asserts the refusal it meets
(the `open_client` fixture fails on any 500 unless the test allows it)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import Counter

import pytest
from sqlalchemy import text

from refit.metrics import HTTP_REQUESTS
from refit.orders import reads
from refit.orders.schemas import OrderDetail, OrderRead
from tests.observability.conftest import json_log  # noqa: F401 (a fixture)
from tests.orders.helpers import place_order
from tests.orders.test_fast_lane import _clients
from tests.resilience.test_db_timeouts import _app_with


def _cursor(created_at: str, row_id: str) -> str:
    raw = json.dumps([created_at, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_a_cursor_outside_postgresqls_range_once_in_utc_is_a_400(
    client, resources, open_client, make_user
):
    """Attack: a seller's cursor whose time is valid in Python but out of range once asyncpg
    turns it to UTC (year 1 at +01:00, year 9999 at -01:00). Refusal: 400 problem+json
    `invalid_cursor`, from the lane and from FastAPI, not a 500."""
    seller = await make_user()
    answered: list[str] = []
    async with _clients(resources, open_client, answered) as (fast, slow):
        for moment in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
            cursor = _cursor(moment, str(uuid.uuid4()))
            for http in (fast, slow):
                answer = await http.get(f"/api/orders?cursor={cursor}", headers=seller.headers)
                assert answer.status_code == 400, (moment, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"
                assert answer.json()["code"] == "invalid_cursor"
    assert answered == ["/api/orders"] * 2


async def test_another_sellers_cursor_pages_through_ones_own_orders_only(
    client, resources, open_client, make_user
):
    """Attack: Bob pages with cursors positioned on Alice's orders (her newest, one far in
    the future, one far in the past) and with an odd time zone. Refusal: Bob's pages hold
    Bob's orders and nothing else."""
    alice, bob = await make_user(), await make_user()
    hers = [(await place_order(client, resources, alice))["id"] for _ in range(2)]
    his = (await place_order(client, resources, bob))["id"]
    async with resources.sessionmaker() as session:
        created = await session.scalar(
            text("SELECT created_at FROM orders WHERE id = :id"), {"id": hers[-1]}
        )
    assert created is not None
    cursors = [
        _cursor(created.isoformat(), hers[-1]),
        _cursor("9999-12-30T00:00:00+00:00", "ffffffff-ffff-ffff-ffff-ffffffffffff"),
        _cursor("9999-12-30T00:00:00+14:00", hers[0]),
        _cursor("0001-01-02T00:00:00-12:00", hers[0]),
    ]
    answered: list[str] = []
    async with _clients(resources, open_client, answered) as (fast, slow):
        for cursor in cursors:
            for http in (fast, slow):
                answer = await http.get(
                    f"/api/orders?limit=100&cursor={cursor}", headers=bob.headers
                )
                assert answer.status_code == 200, answer.text
                ids = {item["id"] for item in answer.json()["items"]}
                assert ids <= {his}, (cursor, ids)
                assert not ids & set(hers)


async def test_no_operator_only_column_reaches_the_seller(
    client, resources, open_client, make_user
):
    """Attack: a seller reads their own order and list while it carries what only operators
    see (label file key and transaction, attention reason, the claiming operator, history
    metadata). Refusal: the answers hold exactly the response model's fields, and none of
    those values."""
    seller = await make_user()
    order = (await place_order(client, resources, seller))["id"]
    secret = f"operator-only-{uuid.uuid4().hex}"
    async with resources.sessionmaker() as session, session.begin():
        operator = await session.scalar(
            text(
                "INSERT INTO operators (username, password_hash, role)"
                " VALUES ('attack-op', :secret, 'admin') RETURNING id"
            ),
            {"secret": secret},
        )
        await session.execute(
            text(
                "UPDATE orders SET label_file_key = :s, label_transaction_id = :s,"
                " attention_reason = :s, attention_at = now(), claimed_by = :op,"
                " claimed_at = now() WHERE id = :id"
            ),
            {"s": secret, "op": operator, "id": order},
        )
        await session.execute(
            text(
                "UPDATE order_status_history"
                " SET metadata = jsonb_build_object('x', CAST(:s AS text)) WHERE order_id = :id"
            ),
            {"s": secret, "id": order},
        )
    answered: list[str] = []
    async with _clients(resources, open_client, answered) as (fast, slow):
        for http in (fast, slow):
            one = await http.get(f"/api/orders/{order}", headers=seller.headers)
            listed = await http.get("/api/orders", headers=seller.headers)
            for answer in (one, listed):
                assert answer.status_code == 200, answer.text
                assert secret not in answer.text
                assert str(operator) not in answer.text
            assert list(one.json()) == list(OrderDetail.model_fields)
            (item,) = listed.json()["items"]
            assert list(item) == list(OrderRead.model_fields)
    assert sorted(answered) == ["/api/orders", "/api/orders/{order_id}"]


async def test_big_and_odd_limits_are_refused_as_fastapi_refuses_them(
    client, resources, open_client, make_user
):
    """Attack: limits past the page's bound, negative, zero, huge, fractional, in other
    digits. Refusal: 422 problem+json from both doors, the database never asked for more
    than 101 rows."""
    seller = await make_user()
    answered: list[str] = []
    async with _clients(resources, open_client, answered) as (fast, slow):
        for limit in ("101", "1000", str(10**30), "0", "-1", "1.5", "1e2", "\uff11\uff10"):
            for http in (fast, slow):
                answer = await http.get(
                    "/api/orders", params={"limit": limit}, headers=seller.headers
                )
                assert answer.status_code == 422, (limit, answer.status_code, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.allow_500
async def test_a_crash_inside_the_lane_is_problem_json_with_its_id_metric_and_access_line(
    client,
    resources,
    make_user,
    json_log,  # noqa: F811 (the fixture imported above)
    monkeypatch,
):
    """Attack: the read raises something unexpected inside the lane (a bug, a driver error
    nobody mapped). Refusal: a 500 problem+json with no internals, the request id echoed,
    counted under the route's template and written in the access line with the seller."""
    seller = await make_user()
    order = uuid.uuid4()

    async def broken(user_id: uuid.UUID, order_id: uuid.UUID) -> OrderDetail:
        raise RuntimeError("secret internals " + str(user_id))

    monkeypatch.setattr(reads, "seller_order_detail", broken)
    route = "/api/orders/{order_id}"
    before = HTTP_REQUESTS.labels("GET", route, "500")._value.get()
    answer = await client.get(
        f"/api/orders/{order}", headers={**seller.headers, "X-Request-ID": "attack-500"}
    )
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "internal_error"
    assert "secret internals" not in answer.text
    assert answer.headers["x-request-id"] == "attack-500"
    assert HTTP_REQUESTS.labels("GET", route, "500")._value.get() == before + 1
    (line,) = [
        line
        for line in json_log()
        if line["event"] == "http.request" and line.get("request_id") == "attack-500"
    ]
    assert line["route"] == route and line["status"] == 500
    assert line["seller_id"] == str(seller.id)


@pytest.mark.timeout(120)
async def test_n_plus_one_reads_at_once_through_the_lane_get_n(
    client, settings, open_client, make_user
):
    """Attack: a seller fires N+1 list and order reads at the same moment against a limit of
    N (the lane's one door, `admit_seller`). Refusal: exactly N answered 200, the rest 429
    problem+json with Retry-After; a second seller's N at the same moment are not counted
    against the first's."""
    limit = 8
    first, second = await make_user(), await make_user()
    async with _app_with(
        settings, open_client, rate_limit_seller_requests=f"{limit}/minute"
    ) as http:
        paths = ["/api/orders", f"/api/orders/{uuid.uuid4()}"]

        async def read(who, n: int) -> tuple[str, int]:
            answer = await http.get(paths[n % 2], headers=who.headers)
            if answer.status_code == 429:
                assert answer.headers["content-type"] == "application/problem+json"
                assert "retry-after" in answer.headers
            return str(who.id), answer.status_code

        answers = await asyncio.gather(
            *(read(first, n) for n in range(limit + 1)), *(read(second, n) for n in range(limit))
        )
    counted = Counter(answers)
    # An unknown order is a 404 that still counts: "not 429" is a request let through.
    let_through = Counter(who for who, code in answers if code != 429)
    assert let_through == {str(first.id): limit, str(second.id): limit}, counted
    assert counted[(str(first.id), 429)] == 1, counted
    assert set(code for _, code in answers) <= {200, 404, 429}, counted
