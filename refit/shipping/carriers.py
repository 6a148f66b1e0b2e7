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
# A seller waiting on the carrier: all its calls together get this long (unless settings say
# otherwise), and a 429 is waited out only when it asks for at most this many seconds.
REQUEST_RATE_LIMIT_WAIT = 1.0


def carrier_name(settings: Settings) -> str:
    """The name of the carrier `open_carrier` gives, without opening it."""
    return ShippoCarrier.name if settings.shippo_api_key else SandboxCarrier.name


@asynccontextmanager
async def open_carrier(
    settings: Settings, *, seller_waiting: bool = False
) -> AsyncIterator[Carrier]:
    """Shippo when REFIT_SHIPPO_API_KEY is set, else the built-in sandbox carrier.

    `seller_waiting`: the calls answer a seller's request, so they fail fast (503 with
    Retry-After) rather than wait: a 429 is retried once at most, after a short wait, and all
    calls together are bounded by the request timeout. Background jobs wait out the carrier.
    """
    if settings.shippo_api_key:
        api, downloads = ShippoCarrier.clients(settings)
        async with api, downloads:
            if seller_waiting:
                yield ShippoCarrier(
                    api,
                    downloads,
                    max_rate_limit_wait=REQUEST_RATE_LIMIT_WAIT,
                    rate_limit_retries=1,
                    budget_seconds=settings.carrier_request_timeout_seconds,
                )
            else:
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
