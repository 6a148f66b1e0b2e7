"""Addresses: CRUD under RLS, one default per seller, field rules, carrier validation."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from refit.addresses import schemas
from refit.addresses.service import fingerprint
from refit.carriers.interface import Address
from refit.models import Order, ShippingAddress

HOME = {
    "name": "Ada Seller",
    "street1": "1600 Amphitheatre Pkwy",
    "city": "Mountain View",
    "state": "ca",
    "zip": "94043",
    "phone": "+1 650 555 0100",
}


async def _create(client, user, **overrides):
    response = await client.post(
        "/api/shipping/addresses", json={**HOME, **overrides}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _rows(resources, user_id):
    async with resources.sessionmaker() as session:
        return (
            await session.scalars(select(ShippingAddress).where(ShippingAddress.user_id == user_id))
        ).all()


async def test_create_read_update_delete(client, make_user, resources):
    seller = await make_user()
    created = await _create(client, seller)
    assert created["state"] == "CA" and created["country"] == "US"
    assert created["is_default"] is True  # the first address is the default
    assert created["is_validated"] is False and created["validation_data"] is None
    one = await client.get(f"/api/shipping/addresses/{created['id']}", headers=seller.headers)
    assert one.status_code == 200 and one.json()["street1"] == HOME["street1"]

    patched = await client.patch(
        f"/api/shipping/addresses/{created['id']}",
        json={"street2": "Apt 4", "phone": None},
        headers=seller.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["street2"] == "Apt 4" and patched.json()["phone"] is None

    gone = await client.delete(f"/api/shipping/addresses/{created['id']}", headers=seller.headers)
    assert gone.status_code == 204
    assert await _rows(resources, seller.id) == []


async def test_one_default_per_seller(client, make_user, resources):
    seller = await make_user()
    first = await _create(client, seller)
    second = await _create(client, seller, street1="1 Infinite Loop", is_default=True)
    third = await _create(client, seller, street1="500 Terry Francine St")
    assert third["is_default"] is False
    defaults = {r.id for r in await _rows(resources, seller.id) if r.is_default}
    assert {str(d) for d in defaults} == {second["id"]}

    made = await client.patch(
        f"/api/shipping/addresses/{first['id']}", json={"is_default": True}, headers=seller.headers
    )
    assert made.status_code == 200 and made.json()["is_default"] is True
    defaults = {str(r.id) for r in await _rows(resources, seller.id) if r.is_default}
    assert defaults == {first["id"]}


async def test_concurrent_default_changes_leave_exactly_one(client, make_user, resources):
    seller = await make_user()
    ids = [(await _create(client, seller, street1=f"{n} Main St"))["id"] for n in range(1, 6)]
    responses = await asyncio.gather(
        *(
            client.patch(
                f"/api/shipping/addresses/{i}", json={"is_default": True}, headers=seller.headers
            )
            for i in ids
        )
    )
    assert [r.status_code for r in responses] == [200] * 5
    assert sum(r.is_default for r in await _rows(resources, seller.id)) == 1


async def test_list_is_paginated_newest_first(client, make_user):
    seller = await make_user()
    made = [(await _create(client, seller, street1=f"{n} Oak Ave"))["id"] for n in range(1, 6)]
    page = await client.get("/api/shipping/addresses?limit=2", headers=seller.headers)
    seen, body = [], page.json()
    while True:
        seen += [a["id"] for a in body["items"]]
        if body["next_cursor"] is None:
            break
        body = (
            await client.get(
                f"/api/shipping/addresses?limit=2&cursor={body['next_cursor']}",
                headers=seller.headers,
            )
        ).json()
    assert seen == list(reversed(made))
    bad = await client.get("/api/shipping/addresses?cursor=nope", headers=seller.headers)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"


async def test_field_rules_are_422_and_change_nothing(client, make_user, resources):
    seller = await make_user()
    for bad in (
        {"zip": "9404"},
        {"zip": "ABCDE"},
        {"state": "California"},
        {"state": "ZZ"},
        {"country": "USA"},
        {"name": "   "},
        {"phone": "call me maybe"},
        {"unexpected": "field"},
    ):
        response = await client.post(
            "/api/shipping/addresses", json={**HOME, **bad}, headers=seller.headers
        )
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_error"
    # Outside the US, states and postal codes are the carrier's business.
    abroad = await _create(
        client, seller, country="de", state="Berlin", zip="10115", street1="Unter den Linden 1"
    )
    assert abroad["country"] == "DE"
    # A PATCH is checked as the address it produces.
    moved = await client.patch(
        f"/api/shipping/addresses/{abroad['id']}", json={"country": "US"}, headers=seller.headers
    )
    assert moved.status_code == 422
    assert [r.country for r in await _rows(resources, seller.id)] == ["DE"]


async def test_another_sellers_address_is_a_404(client, make_user, resources):
    owner, other = await make_user(), await make_user()
    address = await _create(client, owner)
    url = f"/api/shipping/addresses/{address['id']}"
    assert (await client.get(url, headers=other.headers)).status_code == 404
    assert (
        await client.patch(url, json={"city": "Elsewhere"}, headers=other.headers)
    ).status_code == 404
    assert (await client.delete(url, headers=other.headers)).status_code == 404
    validate = await client.post(
        "/api/shipping/validate-address",
        json={"address_id": address["id"]},
        headers=other.headers,
    )
    assert validate.status_code == 404
    listed = await client.get("/api/shipping/addresses", headers=other.headers)
    assert listed.json()["items"] == []
    [row] = await _rows(resources, owner.id)
    assert row.city == "Mountain View" and row.is_validated is False
    assert (await client.get(url)).status_code == 401


async def test_address_of_a_live_order_cannot_be_deleted(client, make_user, resources):
    seller = await make_user()
    address = await _create(client, seller)
    async with resources.sessionmaker() as session, session.begin():
        order = Order(
            user_id=seller.id,
            device_brand="Apple",
            device_model="iPhone 13",
            device_condition="good",
            quoted_price_usd=Decimal("300.00"),
            quoted_price_sol=Decimal("2.0000"),
            shipping_address_id=address["id"],
        )
        session.add(order)
    response = await client.delete(
        f"/api/shipping/addresses/{address['id']}", headers=seller.headers
    )
    assert response.status_code == 409 and response.json()["code"] == "address_in_use"
    assert len(await _rows(resources, seller.id)) == 1


async def test_validate_saved_address_on_the_sandbox(client, make_user, resources):
    seller = await make_user()
    good = await _create(client, seller)
    bad = await _create(client, seller, street1="Main Street")
    ok = await client.post(
        "/api/shipping/validate-address", json={"address_id": good["id"]}, headers=seller.headers
    )
    assert ok.status_code == 200 and ok.json()["is_valid"] is True
    refused = await client.post(
        "/api/shipping/validate-address", json={"address_id": bad["id"]}, headers=seller.headers
    )
    assert refused.status_code == 200
    assert refused.json()["is_valid"] is False
    assert refused.json()["messages"][0]["code"] == "premise_number_missing"
    rows = {str(r.id): r for r in await _rows(resources, seller.id)}
    assert rows[good["id"]].is_validated is True
    assert rows[bad["id"]].is_validated is False
    assert rows[bad["id"]].validation_data["messages"][0]["code"] == "premise_number_missing"
    # Changing the address drops the verdict: it was about another place.
    moved = await client.patch(
        f"/api/shipping/addresses/{good['id']}",
        json={"street1": "2 Main St"},
        headers=seller.headers,
    )
    assert moved.json()["is_validated"] is False and moved.json()["validation_data"] is None


async def test_validate_inline_address_through_shippo(
    client, make_user, shippo_settings, shippo_server
):
    seller = await make_user()
    inline = {k: v for k, v in HOME.items() if k != "phone"}
    response = await client.post(
        "/api/shipping/validate-address", json=inline, headers=seller.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["is_valid"] is True
    assert body["recommended_address"]["zip"] == "94043-1234"
    (_, _, _, sent) = shippo_server.calls("POST", "/addresses")[0]
    assert sent["validate"] is True and sent["state"] == "CA"

    invalid = await client.post(
        "/api/shipping/validate-address",
        json={**inline, "street1": "Nowhere Lane 1"},
        headers=seller.headers,
    )
    assert invalid.status_code == 200
    assert invalid.json()["is_valid"] is False
    assert invalid.json()["messages"][0]["text"].startswith("The address as submitted")

    both = await client.post(
        "/api/shipping/validate-address",
        json={**inline, "address_id": "00000000-0000-0000-0000-000000000000"},
        headers=seller.headers,
    )
    assert both.status_code == 422


async def test_nul_character_is_a_400_and_changes_nothing(client, make_user, resources):
    seller = await make_user()
    response = await client.post(
        "/api/shipping/addresses",
        json={**HOME, "name": "Ada\u0000Lovelace"},
        headers=seller.headers,
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_data"
    assert await _rows(resources, seller.id) == []


def test_the_address_fields_are_written_down_once():
    """The schemas spell the fields out (each has its rules); they must be the same lists."""
    fields = set(schemas.ADDRESS_FIELDS)
    assert set(schemas.AddressFields.model_fields) == fields
    assert set(schemas.AddressUpdate.model_fields) == fields | {"is_default"}
    assert set(schemas.ValidateAddressRequest.model_fields) == fields | {"address_id"}
    assert set(schemas.RecommendedAddress.model_fields) == set(schemas.PLACE_FIELDS)
    assert fields <= set(schemas.AddressRead.model_fields)
    assert fields <= set(ShippingAddress.__table__.columns.keys())
    assert fields <= {f.name for f in dataclasses.fields(Address)}


def test_the_fingerprint_is_the_place_not_the_phone():
    home = schemas.AddressFields.model_validate(HOME)
    assert fingerprint(home) == fingerprint(home.model_copy(update={"phone": "+1 555 0199"}))
    assert fingerprint(home) == fingerprint(home.model_copy(update={"city": " mountain  VIEW"}))
    for field in schemas.PLACE_FIELDS:
        moved = home.model_copy(update={field: "Elsewhere 9"})
        assert fingerprint(moved) != fingerprint(home), field


def test_addresses_import_nothing_from_shipping():
    """Shipping builds on addresses (carrier form, verdicts), never the reverse."""
    package = Path(schemas.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n.startswith("refit.shipping") for n in names), source.name
