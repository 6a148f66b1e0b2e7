"""The SOL/USD rate a quote is priced with: fresh, cross-checked, cached briefly in Redis.

Configuration (settings):
- `price_feed` picks the primary source: "fixed" (settings.sol_usd_fixed_rate, the embedded
  default, never stale, never cached), "coingecko" or "pyth".
- `price_feed_secondary` (optional, "coingecko" or "pyth") names a second source that must
  agree: both are fetched, each must be fresher than `price_max_age_seconds`, and they must
  differ by at most `price_max_divergence_pct` (of the lower one). The primary's price is
  used and the source is recorded as "<primary>,checked:<secondary>". If either source is
  down, stale or they disagree, there is no rate: 503 price_unavailable. Falling back to one
  source alone would silently drop the check the operator asked for.
- A rate that passed the checks is cached in Redis for `price_cache_seconds`, and refused
  from the cache too once older than `price_max_age_seconds`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal

import structlog

from refit.pricing.sources import PriceUnavailable, Rate, build_source
from refit.resources import Resources
from refit.settings import Settings

log = structlog.get_logger(__name__)

# One fetch at a time per process: concurrent quotes on a cold cache share it instead of
# each calling the feed (Hermes bans an IP for 60 s after 30 requests in 10 s).
_fetch_locks: dict[str, asyncio.Lock] = {}


def cache_key(resources: Resources) -> str:
    settings = resources.settings
    return resources.redis_key("pricing", "sol_usd", settings.price_feed, _secondary(settings))


def _secondary(settings: Settings) -> str | None:
    secondary = settings.price_feed_secondary
    return secondary if secondary and secondary != settings.price_feed else None


def _fresh(rate: Rate, settings: Settings, now: dt.datetime) -> bool:
    return (now - rate.published_at).total_seconds() <= settings.price_max_age_seconds


def divergence_pct(a: Decimal, b: Decimal) -> Decimal:
    return abs(a - b) * 100 / min(a, b)


async def _fetch_checked(settings: Settings) -> Rate:
    primary = build_source(settings.price_feed, settings)
    secondary_name = _secondary(settings)
    if secondary_name is None:
        rates = [await primary.fetch()]
    else:
        secondary = build_source(secondary_name, settings)
        rates = list(await asyncio.gather(primary.fetch(), secondary.fetch()))
    now = dt.datetime.now(dt.UTC)
    for rate in rates:
        if not _fresh(rate, settings, now):
            age = int((now - rate.published_at).total_seconds())
            raise PriceUnavailable(f"{rate.source} price is {age} s old")
    if len(rates) == 1:
        return rates[0]
    first, second = rates
    gap = divergence_pct(first.usd_per_sol, second.usd_per_sol)
    if gap > settings.price_max_divergence_pct:
        log.warning(
            "pricing.sources_diverge",
            primary=str(first.usd_per_sol),
            secondary=str(second.usd_per_sol),
            pct=str(gap.quantize(Decimal("0.01"))),
        )
        raise PriceUnavailable(f"{first.source} and {second.source} disagree by {gap:.2f}%")
    return Rate(first.usd_per_sol, f"{first.source},checked:{second.source}", first.published_at)


async def current_rate(resources: Resources) -> Rate:
    """The SOL/USD rate to price with now, or PriceUnavailable (503)."""
    settings = resources.settings
    if settings.price_feed == "fixed" and _secondary(settings) is None:
        return await build_source("fixed", settings).fetch()
    key = cache_key(resources)
    cached = await _read_cache(resources, key)
    if cached is not None:
        return cached
    lock = _fetch_locks.setdefault(key, asyncio.Lock())
    async with lock:
        cached = await _read_cache(resources, key)
        if cached is not None:
            return cached
        rate = await _fetch_checked(settings)
        await resources.redis.set(
            key,
            json.dumps(
                {
                    "usd_per_sol": str(rate.usd_per_sol),
                    "source": rate.source,
                    "published_at": rate.published_at.isoformat(),
                }
            ),
            ex=settings.price_cache_seconds,
        )
        log.info("pricing.rate_fetched", rate=str(rate.usd_per_sol), source=rate.source)
        return rate


async def _read_cache(resources: Resources, key: str) -> Rate | None:
    raw = await resources.redis.get(key)
    if raw is None:
        return None
    data = json.loads(raw)
    rate = Rate(
        Decimal(data["usd_per_sol"]),
        data["source"],
        dt.datetime.fromisoformat(data["published_at"]),
    )
    return rate if _fresh(rate, resources.settings, dt.datetime.now(dt.UTC)) else None
