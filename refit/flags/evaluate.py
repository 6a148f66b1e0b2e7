"""Flags for a wallet, as the rest of the code asks for them.

While the process's follower is live the rules are in memory: asking costs no round trip.
Otherwise (a worker, a CLI, the follower reconnecting) they are read in the caller's
transaction, at most once per FALLBACK_MAX_AGE_SECONDS, so a flag turned off is off here
within about a second even without notifications.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
from refit.flags.follower import current_follower
from refit.flags.rules import FlagRule
from refit.flags.service import load_rules

FALLBACK_MAX_AGE_SECONDS = 1.0

_fallback: tuple[float, Mapping[str, FlagRule]] | None = None


async def current_rules(session: AsyncSession) -> Mapping[str, FlagRule]:
    """Every flag's rule as this process knows it now."""
    global _fallback
    follower = current_follower()
    if follower is not None and follower.live:
        return follower.rules
    now = time.monotonic()
    if _fallback is not None and now - _fallback[0] < FALLBACK_MAX_AGE_SECONDS:
        return _fallback[1]
    # The flags are the service's: a seller's transaction reads them as the service.
    async with transactions.as_service(session):
        rules = await load_rules(session)
    _fallback = (now, rules)
    return rules


def count_exposure(flag: str, variant: str) -> None:
    """One serving of a variant, added to feature_flag_exposures within seconds. Counted only
    where a follower runs (API processes), which is where variants reach clients."""
    follower = current_follower()
    if follower is not None:
        follower.count_exposure(flag, variant)


async def is_enabled(session: AsyncSession, flag: str, wallet: str) -> bool:
    """Whether `flag` is on for the wallet; an unknown flag is off."""
    rule = (await current_rules(session)).get(flag)
    return rule is not None and rule.enabled_for(wallet)


async def variant(session: AsyncSession, flag: str, wallet: str) -> str | None:
    """The wallet's variant of `flag` (None when off for it), counted as one exposure."""
    rule = (await current_rules(session)).get(flag)
    chosen = rule.variant_for(wallet) if rule is not None else None
    if chosen is not None:
        count_exposure(flag, chosen)
    return chosen


async def flags_for(session: AsyncSession, wallet: str) -> tuple[dict[str, bool], dict[str, str]]:
    """Every flag on or off for the wallet, and its variant of each that has one (each counted
    as an exposure): what GET /api/flags answers."""
    enabled: dict[str, bool] = {}
    variants: dict[str, str] = {}
    for name, rule in (await current_rules(session)).items():
        enabled[name] = rule.enabled_for(wallet)
        chosen = rule.variant_for(wallet)
        if chosen is not None:
            variants[name] = chosen
            count_exposure(name, chosen)
    return enabled, variants
