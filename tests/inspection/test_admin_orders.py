"""The operators' order list and search, and what OpenAPI says of the operators' endpoints."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from refit.app import create_app
from refit.models import Order
from tests.inspection.helpers import inspecting_order, operator, shipped_order


async def _search(client, op, **params):
    response = await client.get("/api/admin/orders", params=params, headers=op.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_list_and_search(client, resources, make_user):
    ada = await make_user(
        wallet_address="AdaWa11etXyz111111111111111111111", email="ada@example.com"
    )
    bob = await make_user(email="bob@example.org")
    op = await operator(resources)
    first = await shipped_order(client, resources, ada)
    second = await inspecting_order(client, resources, bob, op)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order).where(Order.id == uuid.UUID(second)).values(tracking_number="9400TRACK42")
        )
        number = (await session.get(Order, uuid.UUID(first))).order_number

    everything = await _search(client, op)
    # Newest first.
    assert [o["id"] for o in everything["items"]] == [second, first]
    assert everything["items"][1]["wallet_address"] == ada.user.wallet_address
    assert everything["items"][1]["email"] == "ada@example.com"

    def ids(page):
        return [o["id"] for o in page["items"]]

    assert ids(await _search(client, op, status="inspecting")) == [second]
    assert ids(await _search(client, op, q=number)) == [first]
    assert ids(await _search(client, op, q=number.lower())) == [first]
    assert ids(await _search(client, op, q="AdaWa11et")) == [first]
    assert ids(await _search(client, op, q="adawa11et")) == []  # base58 is case-sensitive
    assert ids(await _search(client, op, q="9400track42")) == [second]
    assert ids(await _search(client, op, q="BOB@example")) == [second]
    assert ids(await _search(client, op, q="%")) == []  # a wildcard is a character here
    assert ids(await _search(client, op, q="ada@example.com", status="inspecting")) == []

    page = await _search(client, op, limit=1)
    assert ids(page) == [second] and page["next_cursor"]
    rest = await _search(client, op, limit=1, cursor=page["next_cursor"])
    assert ids(rest) == [first] and rest["next_cursor"] is None

    bad = await client.get("/api/admin/orders", params={"cursor": "nope"}, headers=op.headers)
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_cursor"
    unknown = await client.get("/api/admin/orders", params={"status": "lost"}, headers=op.headers)
    assert unknown.status_code == 422


async def test_operator_endpoints_document_their_problems(resources):
    spec = create_app(resources.settings, resources=resources).openapi()
    paths = spec["paths"]
    expected = {
        ("get", "/api/admin/orders"): {"401", "400", "422"},
        ("get", "/api/admin/orders/{order_id}"): {"401", "404"},
        ("post", "/api/admin/orders/{order_id}/receive"): {"401", "404", "409"},
        ("post", "/api/admin/orders/{order_id}/inspection/start"): {"401", "404", "409"},
        ("post", "/api/admin/orders/{order_id}/inspect"): {"401", "403", "404", "409", "422"},
        ("post", "/api/admin/orders/{order_id}/evidence"): {"401", "404", "409", "413", "422"},
        ("get", "/api/evidence/{photo_id}"): {"403", "404"},
    }
    for (method, path), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (method, path, sorted(responses))
        for status in statuses:
            assert "application/problem+json" in responses[status]["content"], (path, status)
        if method == "post":
            names = {p["name"] for p in paths[path][method].get("parameters", [])}
            assert "Idempotency-Key" in names, path
