"""Which carrier this process talks to, decided by settings in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from refit import resources
from refit.errors import ProblemError, ServiceUnavailable, Unprocessable
from refit.settings import Settings
from refit.shipping.carrier import Carrier, CarrierError, CarrierUnavailable
from refit.shipping.sandbox import SandboxCarrier
from refit.shipping.shippo import ShippoCarrier

# Carrier calls (validation, rating) per seller: the carrier's own quota is account-wide
# (Shippo test mode: 50 POSTs a minute), so one seller must not be able to spend it all.
CARRIER_CALLS_PER_USER = "30/minute"


@asynccontextmanager
async def open_carrier(settings: Settings) -> AsyncIterator[Carrier]:
    """Shippo when REFIT_SHIPPO_API_KEY is set, else the built-in sandbox carrier."""
    if settings.shippo_api_key:
        api, downloads = ShippoCarrier.clients(settings)
        async with api, downloads:
            yield ShippoCarrier(api, downloads)
    else:
        yield SandboxCarrier(resources.current().sessionmaker)


def as_problem(exc: CarrierError) -> ProblemError:
    """A carrier failure as the client should see it: 503 when worth retrying, else 422."""
    messages = [m.as_dict() for m in exc.messages]
    if isinstance(exc, CarrierUnavailable):
        retry_after = max(1, round(exc.retry_after or 5))
        return ServiceUnavailable(
            "The carrier is not answering right now; try again shortly",
            code="carrier_unavailable",
            headers={"Retry-After": str(retry_after)},
        )
    return Unprocessable(exc.detail, code="carrier_rejected", extra={"messages": messages})
