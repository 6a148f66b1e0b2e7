"""Shipping fixtures: the local Shippo-shaped server and settings pointing at it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest

from refit.carriers.picker import open_carrier
from refit.carriers.shippo.client import ShippoCarrier
from refit.models import Order
from refit.settings import Settings
from tests.shipping.shippo_server import TOKEN, ShippoServer


@pytest.fixture
def shippo_server() -> Iterator[ShippoServer]:
    server = ShippoServer().start()
    yield server
    server.stop()


@pytest.fixture
async def shippo(shippo_server: ShippoServer, tmp_path) -> AsyncIterator[ShippoCarrier]:
    """A ShippoCarrier talking to the local server (no database needed)."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env="test",
        data_dir=tmp_path,
        shippo_api_key=TOKEN,
        shippo_base_url=shippo_server.url,
        shippo_timeout_seconds=5,
    )
    async with open_carrier(settings) as carrier:
        assert isinstance(carrier, ShippoCarrier)
        yield carrier


@pytest.fixture
def shippo_settings(settings: Settings, shippo_server: ShippoServer) -> Settings:
    """The per-test settings (own database) switched to the local Shippo server."""
    settings.shippo_api_key = TOKEN
    settings.shippo_base_url = shippo_server.url
    settings.shippo_timeout_seconds = 5
    return settings


HOME = {
    "name": "Ada Seller",
    "street1": "1600 Amphitheatre Pkwy",
    "city": "Mountain View",
    "state": "CA",
    "zip": "94043",
}


@pytest.fixture
async def make_order(client, resources):
    """A seller's pending order with a saved address (the row inserted with the service role,
    as the orders domain would create it)."""

    async def make(
        seller, *, category: str | None = "phone", model: str = "iPhone 13", **address_overrides
    ):
        response = await client.post(
            "/api/shipping/addresses",
            json={**HOME, **address_overrides},
            headers=seller.headers,
        )
        assert response.status_code == 201, response.text
        async with resources.sessionmaker() as session, session.begin():
            order = Order(
                user_id=seller.id,
                device_brand="Apple",
                device_model=model,
                device_condition="good",
                device_category=category,
                quoted_price_usd=Decimal("412.50"),
                quoted_price_sol=Decimal("2.7500"),
                shipping_address_id=uuid.UUID(response.json()["id"]),
            )
            session.add(order)
        return order

    return make
