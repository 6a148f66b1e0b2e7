"""Which carrier this process talks to, decided by settings in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from refit import resources
from refit.settings import Settings
from refit.shipping.carrier import Carrier
from refit.shipping.sandbox import SandboxCarrier
from refit.shipping.shippo import ShippoCarrier


def carrier_name(settings: Settings) -> str:
    return ShippoCarrier.name if settings.shippo_api_key else SandboxCarrier.name


@asynccontextmanager
async def open_carrier(settings: Settings) -> AsyncIterator[Carrier]:
    """Shippo when REFIT_SHIPPO_API_KEY is set, else the built-in sandbox carrier."""
    if settings.shippo_api_key:
        api, downloads = ShippoCarrier.clients(settings)
        async with api, downloads:
            yield ShippoCarrier(api, downloads)
    else:
        yield SandboxCarrier(resources.current().sessionmaker)
