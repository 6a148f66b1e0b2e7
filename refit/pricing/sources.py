"""SOL/USD price sources: a fixed rate (the embedded default), CoinGecko, Pyth Hermes.

Each source returns a `Rate` with the time the price was published, so the caller can refuse
a stale one. Any failure (network, HTTP status, unexpected body, a price Pyth itself is unsure
of) raises `PriceUnavailable` (503 price_unavailable): a quote is never priced on a guess.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from refit import tls
from refit.errors import ServiceUnavailable
from refit.settings import Settings

# Pyth's SOL/USD price feed id, as Pyth publishes it for Hermes.
PYTH_SOL_USD_FEED = "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d"
# Pyth publishes a confidence interval: wider than this share of the price, it is not sure.
PYTH_MAX_CONF_PCT = Decimal("1.0")
HTTP_TIMEOUT_SECONDS = 5.0


class PriceUnavailable(ServiceUnavailable):
    code = "price_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"The SOL/USD price is unavailable right now ({detail}); try again shortly",
            headers={"Retry-After": "10"},
        )


@dataclass(frozen=True)
class Rate:
    usd_per_sol: Decimal
    source: str
    published_at: dt.datetime


class PriceSource(Protocol):
    name: str

    async def fetch(self) -> Rate: ...


class FixedSource:
    """settings.sol_usd_fixed_rate: development, tests, and a deployment without feeds."""

    name = "fixed"

    def __init__(self, settings: Settings) -> None:
        self.rate = settings.sol_usd_fixed_rate

    async def fetch(self) -> Rate:
        return Rate(self.rate, self.name, dt.datetime.now(dt.UTC))


async def _get_json(url: str, *, params: Any, headers: dict[str, str], source: str) -> Any:
    # httpx costs ~0.1-0.4 s of CPU at import (its CLI pulls in click and rich where they
    # are not loaded yet): only a live price feed needs it, never the fixed rate.
    import httpx

    try:
        async with httpx.AsyncClient(
            timeout=HTTP_TIMEOUT_SECONDS, verify=tls.client_context()
        ) as client:
            response = await client.get(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise PriceUnavailable(f"{source} unreachable: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise PriceUnavailable(f"{source} answered HTTP {response.status_code}")
    try:
        # Decimals straight from the text: a rate never passes through a float.
        return json.loads(response.text, parse_float=Decimal)
    except ValueError as exc:
        raise PriceUnavailable(f"{source} sent a body that is not JSON") from exc


def _positive(value: Any, source: str) -> Decimal:
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise PriceUnavailable(f"{source} sent a price that is not a number") from exc
    if not number.is_finite() or number <= 0:
        raise PriceUnavailable(f"{source} sent a price that is not positive")
    return number


def _timestamp(value: Any, source: str) -> dt.datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise PriceUnavailable(f"{source} sent no publish time")
    return dt.datetime.fromtimestamp(value, dt.UTC)


class CoinGeckoSource:
    """GET /simple/price?ids=solana&vs_currencies=usd&include_last_updated_at=true"""

    name = "coingecko"

    def __init__(self, settings: Settings) -> None:
        self.url = settings.coingecko_url.rstrip("/") + "/simple/price"
        self.headers = {"Accept": "application/json"}
        if settings.coingecko_api_key:
            # Pro keys go to pro-api.coingecko.com, demo keys to the public host.
            header = "x-cg-pro-api-key" if "pro-api." in self.url else "x-cg-demo-api-key"
            self.headers[header] = settings.coingecko_api_key

    async def fetch(self) -> Rate:
        body = await _get_json(
            self.url,
            params={"ids": "solana", "vs_currencies": "usd", "include_last_updated_at": "true"},
            headers=self.headers,
            source=self.name,
        )
        entry = body.get("solana") if isinstance(body, dict) else None
        if not isinstance(entry, dict):
            raise PriceUnavailable("coingecko sent no solana price")
        return Rate(
            _positive(entry.get("usd"), self.name),
            self.name,
            _timestamp(entry.get("last_updated_at"), self.name),
        )


class PythHermesSource:
    """GET /v2/updates/price/latest?ids[]=<SOL/USD>&parsed=true; USD = price * 10^expo."""

    name = "pyth"

    def __init__(self, settings: Settings) -> None:
        self.url = settings.pyth_hermes_url.rstrip("/") + "/v2/updates/price/latest"
        self.headers = {"Accept": "application/json"}
        if settings.pyth_api_key:
            # The upgraded Hermes answers 401 without `Authorization: Bearer <API key>`.
            self.headers["Authorization"] = f"Bearer {settings.pyth_api_key}"

    async def fetch(self) -> Rate:
        body = await _get_json(
            self.url,
            params={"ids[]": "0x" + PYTH_SOL_USD_FEED, "parsed": "true"},
            headers=self.headers,
            source=self.name,
        )
        parsed = body.get("parsed") if isinstance(body, dict) else None
        feed = next(
            (
                p
                for p in parsed or []
                if isinstance(p, dict)
                and str(p.get("id", "")).lower().removeprefix("0x") == PYTH_SOL_USD_FEED
            ),
            None,
        )
        price = feed.get("price") if feed else None
        if not isinstance(price, dict):
            raise PriceUnavailable("pyth sent no SOL/USD price")
        expo = price.get("expo")
        if not isinstance(expo, int) or isinstance(expo, bool):
            raise PriceUnavailable("pyth sent no exponent")
        try:
            mantissa = int(price.get("price"))  # type: ignore[arg-type]
            conf = int(price.get("conf"))  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise PriceUnavailable("pyth sent a price that is not an integer") from exc
        usd = _positive(Decimal(mantissa).scaleb(expo), self.name)
        if Decimal(conf).scaleb(expo) * 100 > usd * PYTH_MAX_CONF_PCT:
            raise PriceUnavailable("pyth's confidence interval is too wide")
        return Rate(usd, self.name, _timestamp(price.get("publish_time"), self.name))


def build_source(name: str, settings: Settings) -> PriceSource:
    sources: dict[str, type[FixedSource | CoinGeckoSource | PythHermesSource]] = {
        "fixed": FixedSource,
        "coingecko": CoinGeckoSource,
        "pyth": PythHermesSource,
    }
    return sources[name](settings)
