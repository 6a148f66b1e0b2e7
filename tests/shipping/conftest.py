"""Shipping fixtures: the local Shippo-shaped server and settings pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from refit.settings import Settings
from refit.shipping.carriers import open_carrier
from refit.shipping.shippo import ShippoCarrier
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
