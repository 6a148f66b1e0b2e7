"""POST /api/orders/create: from the caller's own unexpired, unused quote and own address;
device and prices copied from the quote; Idempotency-Key replays the first response."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select, text, update

from refit.models import IdempotencyKey, Order, OrderStatusHistory, Quote
from tests.locks import wait_until_waiting_on_lock
from tests.orders.helpers import add_address, quote


async def _orders(resources) -> list[Order]:
    async with resources.sessionmaker() as session:
        return list((await session.scalars(select(Order))).all())


async def _create(client, seller, body, key=None):
    headers = dict(seller.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/api/orders/create", json=body, headers=headers)


@pytest.fixture
async def ready(client, resources, make_user):
    """A seller with a fresh quote and a saved address."""
    seller = await make_user()
    q = await quote(client, seller)
    address_id = await add_address(resources, seller.id)
    body = {"quote_id": q["quote_id"], "shipping_address_id": str(address_id)}
    return seller, q, body


async def test_order_copies_the_quote(client, resources, ready):
    seller, q, body = ready
    response = await _create(client, seller, body)
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "pending"
    assert order["order_number"].startswith(f"ORD-{dt.datetime.now(dt.UTC).year}-")
    assert order["user_id"] == str(seller.id)
    assert order["quote_id"] == q["quote_id"]
    assert order["shipping_address_id"] == body["shipping_address_id"]
    assert (order["device_brand"], order["device_model"], order["device_storage"]) == (
        "Apple",
        "iPhone 15 Pro",
        "256GB",
    )
    assert (order["device_condition"], order["device_category"]) == ("good", "phone")
    assert (order["quoted_price_usd"], order["quoted_price_sol"]) == ("442.00", "2.9466")
    assert order["quoted_price_lamports"] == 2_946_600_000
    assert order["final_price_usd"] is None and order["shipped_at"] is None
    assert [(h["from_status"], h["status"], h["actor"]) for h in order["status_history"]] == [
        (None, "pending", "user")
    ]
    fetched = await client.get(f"/api/orders/{order['id']}", headers=seller.headers)
    assert fetched.json() == order


async def test_same_idempotency_key_twice_one_order_same_body(client, resources, ready):
    seller, _, body = ready
    key = str(uuid.uuid4())
    first = await _create(client, seller, body, key)
    second = await _create(client, seller, body, key)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content  # byte for byte
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(await _orders(resources)) == 1


async def test_same_key_other_body_is_409(client, resources, ready):
    seller, _, body = ready
    key = "order-attempt-1"
    assert (await _create(client, seller, body, key)).status_code == 201
    other = await quote(client, seller, device_condition="fair")
    response = await _create(client, seller, {**body, "quote_id": other["quote_id"]}, key)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_key_reused"
    assert len(await _orders(resources)) == 1


async def _all_in_flight_together(client, resources, body, requests):
    """Start `requests` (coroutine factories) while this test holds the order's address row
    FOR UPDATE: each create needs it FOR SHARE, so all are in flight at once; let go only when
    PostgreSQL shows every one of them waiting on a lock."""
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("SELECT id FROM shipping_addresses WHERE id = :id FOR UPDATE"),
            {"id": body["shipping_address_id"]},
        )
        tasks = [asyncio.create_task(request()) for request in requests]
        try:
            # The first waits on this lock; with one key, the others on its key's row.
            await wait_until_waiting_on_lock(resources.engine, count=len(tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
    return await asyncio.gather(*tasks)


async def test_concurrent_requests_with_one_key_make_one_order(client, resources, ready):
    seller, _, body = ready
    responses = await _all_in_flight_together(
        client,
        resources,
        body,
        [lambda: _create(client, seller, body, "race-key") for _ in range(5)],
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert len(await _orders(resources)) == 1
    async with resources.sessionmaker() as session:
        keys = (await session.scalars(select(IdempotencyKey))).all()
    assert [(k.key, k.response_status) for k in keys] == [("race-key", 201)]


async def test_keys_are_per_user(client, resources, ready, make_user):
    seller, _, body = ready
    assert (await _create(client, seller, body, "shared-key")).status_code == 201
    other = await make_user()
    q = await quote(client, other)
    address = await add_address(resources, other.id)
    response = await _create(
        client,
        other,
        {"quote_id": q["quote_id"], "shipping_address_id": str(address)},
        "shared-key",
    )
    assert response.status_code == 201
    assert response.json()["user_id"] == str(other.id)
    assert len(await _orders(resources)) == 2


async def test_failed_request_does_not_burn_the_key(client, resources, ready):
    seller, _, body = ready
    wrong = {**body, "shipping_address_id": str(uuid.uuid4())}
    assert (await _create(client, seller, wrong, "k1")).status_code == 404
    # The key was rolled back with the failed work: the corrected request still goes through.
    response = await _create(client, seller, {**body}, "k1")
    assert response.status_code == 201


async def test_bad_idempotency_key_is_400(client, ready):
    seller, _, body = ready
    response = await _create(client, seller, body, "x" * 256)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"


async def test_one_order_per_quote(client, resources, ready):
    seller, _, body = ready
    assert (await _create(client, seller, body)).status_code == 201
    again = await _create(client, seller, body)
    assert again.status_code == 409
    assert again.json()["code"] == "quote_already_used"
    assert len(await _orders(resources)) == 1


async def test_racing_creates_on_one_quote(client, resources, ready):
    seller, _, body = ready
    responses = await _all_in_flight_together(
        client,
        resources,
        body,
        [lambda i=i: _create(client, seller, body, f"key-{i}") for i in range(4)],
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"quote_already_used"}
    assert len(await _orders(resources)) == 1


async def _nothing_created(resources) -> None:
    assert await _orders(resources) == []
    async with resources.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(OrderStatusHistory)) == 0
        assert await session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


async def test_expired_quote(client, resources, ready):
    seller, q, body = ready
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Quote)
            .where(Quote.id == uuid.UUID(q["quote_id"]))
            .values(expires_at=func.now() - dt.timedelta(seconds=1))
        )
    response = await _create(client, seller, body, "expired")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "quote_expired"
    assert "ask for a new quote" in problem["detail"]
    await _nothing_created(resources)


async def test_another_users_quote(client, resources, ready, make_user):
    _, _, body = ready
    mallory = await make_user()
    own_address = await add_address(resources, mallory.id)
    response = await _create(
        client, mallory, {**body, "shipping_address_id": str(own_address)}, "steal"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "quote_not_found"
    await _nothing_created(resources)


async def test_another_users_address(client, resources, ready, make_user):
    seller, _, body = ready
    other = await make_user()
    foreign_address = await add_address(resources, other.id)
    response = await _create(client, seller, {**body, "shipping_address_id": str(foreign_address)})
    assert response.status_code == 404
    assert response.json()["code"] == "address_not_found"
    await _nothing_created(resources)


@pytest.mark.parametrize(
    "tamper",
    [
        {"quoted_price_usd": "9999.00"},
        {"quoted_price_sol": "100.0000"},
        {"price_usd": "9999.00"},
        {"final_price_usd": "9999.00"},
        {"user_id": "00000000-0000-0000-0000-000000000000"},
        {"status": "completed"},
    ],
)
async def test_tampered_fields_are_refused(client, resources, ready, tamper):
    seller, _, body = ready
    response = await _create(client, seller, {**body, **tamper}, "tamper")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_error"
    field = next(iter(tamper))
    assert {
        "loc": ["body", field],
        "msg": "Extra inputs are not permitted",
        "type": "extra_forbidden",
    } in problem["errors"]
    await _nothing_created(resources)


async def test_malformed_ids_are_422(client, ready):
    seller, _, body = ready
    response = await _create(client, seller, {**body, "quote_id": "not-a-uuid"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "quote_id"]


async def test_old_keys_are_pruned(client, resources, ready):
    from refit import idempotency

    seller, _, body = ready
    assert (await _create(client, seller, body, "old-key")).status_code == 201
    async with resources.sessionmaker() as session, session.begin():
        assert await idempotency.prune(session) == 0
        await session.execute(
            update(IdempotencyKey).values(created_at=func.now() - dt.timedelta(days=8))
        )
        assert await idempotency.prune(session) == 1
