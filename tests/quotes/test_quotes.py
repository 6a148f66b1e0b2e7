"""POST /api/quotes: priced on the server from catalog and grade; money exact at the edges."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select

from refit.catalog import service as catalog_service
from refit.catalog.schemas import CatalogFile
from refit.models import Quote
from tests.orders.helpers import DEVICE

GRADES = [
    {"code": "flawless", "name": "Flawless", "description": "Like new.", "price_factor": "1"},
    {"code": "good", "name": "Good", "description": "Light wear.", "price_factor": "0.85"},
    {"code": "fair", "name": "Fair", "description": "Heavy wear.", "price_factor": "0.65"},
    {"code": "broken", "name": "Broken", "description": "Dead.", "price_factor": "0.15"},
]
EDGE_PRICES = {
    "cent": "0.01",
    "ninety-nine": "0.99",
    "odd": "412.37",
    "four-nines": "9999.99",
    "ceiling": "99999999.99",  # numeric(10, 2)'s largest value
}


@pytest.fixture
async def edge_catalog(resources):
    catalog = CatalogFile.model_validate(
        {
            "grades": GRADES,
            "models": [
                {"brand": "Edge", "model": "Phone", "category": "phone", "prices": EDGE_PRICES},
                {"brand": "Edge", "model": "Watch", "category": "watch", "prices": {"32GB": "9"}},
            ],
        }
    )
    async with resources.sessionmaker() as session, session.begin():
        await catalog_service.load(session, catalog)
    await catalog_service.invalidate(resources)


async def _quote(client, seller, **body):
    return await client.post("/api/quotes", json={**DEVICE, **body}, headers=seller.headers)


@pytest.mark.parametrize(
    ("storage", "condition", "usd", "sol", "lamports"),
    [
        # 0.01 x 0.15 = 0.0015: rounds down to nothing; never up to a cent we did not price.
        ("cent", "broken", "0.00", "0.0000", 0),
        ("cent", "flawless", "0.01", "0.0000", 0),  # 0.01 / 150 = 0.0000666..
        ("ninety-nine", "good", "0.84", "0.0056", 5_600_000),  # 0.8415; 0.0056
        ("odd", "fair", "268.04", "1.7869", 1_786_900_000),  # 268.0405; 1.78693..
        ("four-nines", "good", "8499.99", "56.6666", 56_666_600_000),  # 8499.9915; 56.66660
        ("four-nines", "broken", "1499.99", "9.9999", 9_999_900_000),  # 1499.9985; 9.99993..
        ("ceiling", "flawless", "99999999.99", "666666.6666", 666_666_666_600_000),
        ("ceiling", "fair", "64999999.99", "433333.3332", 433_333_333_200_000),  # .9935; .33332..
    ],
)
async def test_money_is_exact_at_catalog_edges(
    edge_catalog, client, make_user, resources, storage, condition, usd, sol, lamports
):
    seller = await make_user()
    response = await _quote(
        client,
        seller,
        device_brand="Edge",
        device_model="Phone",
        storage=storage,
        device_condition=condition,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    # Strings in JSON, never floats; lamports an integer.
    assert (body["price_usd"], body["price_sol"], body["price_lamports"]) == (usd, sol, lamports)
    assert isinstance(body["price_lamports"], int)
    assert body["sol_usd_rate"] == "150.00000000"
    async with resources.sessionmaker() as session:
        row = await session.get(Quote, uuid.UUID(body["quote_id"]))
    assert row is not None
    # As stored: numeric(10,2), numeric(10,4), bigint; the same values, exactly.
    assert row.price_usd == Decimal(usd) and str(row.price_usd) == usd
    assert row.price_sol == Decimal(sol) and str(row.price_sol) == sol
    assert row.price_lamports == lamports
    assert row.price_sol * 10**9 == row.price_lamports


@pytest.mark.feeds(sol_usd_fixed_rate=Decimal("137.123456789"))
async def test_rate_with_many_decimals(edge_catalog, client, make_user):
    seller = await make_user()
    response = await _quote(
        client,
        seller,
        device_brand="Edge",
        device_model="Phone",
        storage="odd",
        device_condition="flawless",
    )
    body = response.json()
    # Rate recorded to 8 places (half-even), SOL computed from the recorded rate:
    # 412.37 / 137.12345679 = 3.00729...
    assert body["sol_usd_rate"] == "137.12345679"
    assert body["price_sol"] == "3.0072"


@pytest.mark.feeds(sol_usd_fixed_rate=Decimal("1"))
async def test_sol_beyond_the_column_is_refused(edge_catalog, client, make_user):
    seller = await make_user()
    response = await _quote(
        client,
        seller,
        device_brand="Edge",
        device_model="Phone",
        storage="ceiling",
        device_condition="flawless",
    )
    assert response.status_code == 422
    assert response.json()["code"] == "price_out_of_range"


async def test_quote_records_rate_and_locks_usd_for_the_ttl(client, make_user, resources):
    seller = await make_user()
    before = dt.datetime.now(dt.UTC)
    response = await _quote(client, seller)
    assert response.status_code == 201
    body = response.json()
    assert body["device_brand"] == "Apple" and body["device_model"] == "iPhone 15 Pro"
    assert body["storage"] == "256GB" and body["device_category"] == "phone"
    assert body["price_usd"] == "442.00"  # 520.00 x 0.85
    assert body["price_sol"] == "2.9466"  # 442 / 150 = 2.94666..
    assert body["rate_source"] == "fixed"
    created = dt.datetime.fromisoformat(body["created_at"])
    assert dt.datetime.fromisoformat(body["expires_at"]) - created == dt.timedelta(days=14)
    assert created >= before
    assert dt.datetime.fromisoformat(body["rate_timestamp"]) >= before
    again = await client.get(f"/api/quotes/{body['quote_id']}", headers=seller.headers)
    assert again.json() == body


async def test_names_are_case_insensitive_and_single_storage_optional(
    edge_catalog, client, make_user
):
    seller = await make_user()
    response = await _quote(
        client,
        seller,
        device_brand="eDGE",
        device_model="watch",
        storage=None,
        device_condition="GOOD",
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["device_brand"], body["device_model"], body["storage"]) == (
        "Edge",
        "Watch",
        "32GB",
    )
    assert body["device_category"] == "watch"
    assert body["device_condition"] == "good"
    assert body["price_usd"] == "7.65"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"price_usd": "9999.00"}, 422, "validation_error"),
        ({"price_sol": "99"}, 422, "validation_error"),
        ({"device_model": "iPhone 99"}, 422, "unknown_device"),
        ({"storage": None}, 422, "storage_required"),
        ({"storage": "3TB"}, 422, "unknown_storage"),
        ({"device_condition": "mint"}, 422, "unknown_condition"),
        ({"device_details": {f"k{i}": "v" for i in range(21)}}, 422, "validation_error"),
    ],
)
async def test_bad_requests_are_clear_and_write_nothing(
    client, make_user, resources, change, status, code
):
    seller = await make_user()
    response = await _quote(client, seller, **change)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    if code == "validation_error":
        field = next(iter(change))
        if field.startswith("price"):
            assert {
                "loc": ["body", field],
                "msg": "Extra inputs are not permitted",
                "type": "extra_forbidden",
            } in problem["errors"]
    if code in ("storage_required", "unknown_storage"):
        assert problem["storage_options"] == ["128GB", "256GB", "512GB", "1TB"]
    async with resources.sessionmaker() as session:
        assert (await session.scalars(select(Quote))).all() == []


async def test_quotes_need_a_token_and_are_private(client, make_user):
    assert (await client.post("/api/quotes", json=DEVICE)).status_code == 401
    alice, bob = await make_user(), await make_user()
    quote = (await _quote(client, alice)).json()
    response = await client.get(f"/api/quotes/{quote['quote_id']}", headers=bob.headers)
    assert response.status_code == 404
    assert response.json()["code"] == "quote_not_found"


async def test_nul_character_in_device_fields_is_a_400(client, make_user):
    seller = await make_user()
    for body in (
        {**DEVICE, "device_details": {"note": "bad\u0000byte"}},
        {**DEVICE, "device_brand": "App\u0000le"},
    ):
        response = await client.post("/api/quotes", json=body, headers=seller.headers)
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/problem+json"
