"""Which carrier this process talks to, decided by settings in one place.

With the interface, the one module of refit.carriers that shipping imports: so what shipping
needs of one carrier in particular is handed on from here too (see __all__). The webhooks
are Shippo's format whichever carrier is picked (the sandbox posts Shippo-shaped, signed
bodies), so their signature and their objects are read with Shippo's wire format; only an
operator's push moves a sandbox parcel on, and queues the sandbox's webhook of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from refit import resources
from refit.carriers.interface import Carrier, CarrierError, CarrierUnavailable
from refit.carriers.sandbox.carrier import PUSH_TASK, SandboxCarrier, push_lock
from refit.carriers.shippo.client import ShippoCarrier
from refit.carriers.shippo.wire import parse_track, parse_transaction, sign
from refit.errors import ProblemError, ServiceUnavailable, Unprocessable
from refit.settings import Settings

__all__ = [
    "CARRIER_CALLS_PER_USER",
    "PUSH_TASK",
    "REQUEST_RATE_LIMIT_WAIT",
    "SandboxCarrier",
    "as_problem",
    "carrier_name",
    "open_carrier",
    "parse_track",
    "parse_transaction",
    "push_lock",
    "sign",
]

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
    settings: Settings, *, seller_waiting: bool = False, job: bool = False
) -> AsyncIterator[Carrier]:
    """Shippo when REFIT_SHIPPO_API_KEY is set, else the built-in sandbox carrier.

    `seller_waiting`: the calls answer a seller's request, so they fail fast (503 with
    Retry-After) rather than wait: a 429 is retried once at most, after a short wait, and all
    calls together are bounded by the request timeout. Background jobs wait out the carrier.
    `job`: the calls are a job's; the sandbox's transactions are then a job's too (no
    statement timeout, as the job's own), which spares each one a round trip.
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
        yield SandboxCarrier(resources.current().sessionmaker, job=job)


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
