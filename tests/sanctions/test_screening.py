"""Screening against the list loaded, on a real database: hits and misses in one SELECT, the
list's age and staleness, the hold reasons, and a reload that readers see whole (the old list
or the new, never none), one load at a time. Time passes in the lists' publish dates."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select

from refit.models.sanction import SanctionedAddress
from refit.sanctions import service
from refit.sanctions.service import HELD_LIST_STALE, HELD_SANCTIONED, ListRefused, Match
from tests.sanctions.helpers import (
    ID_NOT_AN_ADDRESS,
    LISTED,
    LISTED_UNDER_USDC,
    NOT_LISTED,
    days_ago,
    sample_list,
)

# List B: the sample, with the address filed under USDC replaced by another.
B = {LISTED_UNDER_USDC: NOT_LISTED}


async def _load(resources, sdn, *, allow_older=False):
    async with resources.sessionmaker() as session, session.begin():
        return await service.replace_list(session, sdn, allow_older=allow_older)


async def _screen(resources, address):
    async with resources.sessionmaker() as session, session.begin():
        return await service.screen(session, address)


async def test_no_list_loaded_screens_nothing_and_is_stale(resources, settings):
    result = await _screen(resources, LISTED)
    assert not result.hit and result.listing is None and result.age is None
    assert service.is_stale(settings, None, result.checked_at)
    assert result.hold_reason(settings) is None  # outside production: an alert only
    production = settings.model_copy(update={"env": "production"})
    assert result.hold_reason(production) == HELD_LIST_STALE


async def test_a_listed_address_is_a_hit_with_its_entry(resources, settings):
    loaded = await _load(resources, sample_list(days_ago(2)))
    assert (loaded.published_on, loaded.record_count, loaded.address_count) == (
        days_ago(2),
        3,
        2,
    )

    hit = await _screen(resources, LISTED)
    assert hit.hit
    assert hit.match == Match(40001, "EXAMPLOV, Ivan", "Digital Currency Address - SOL")
    assert hit.listing == loaded
    assert dt.timedelta(days=2) <= hit.age < dt.timedelta(days=3)
    assert hit.hold_reason(settings) == HELD_SANCTIONED
    under_usdc = await _screen(resources, LISTED_UNDER_USDC)
    assert under_usdc.match and under_usdc.match.id_type == "Digital Currency Address - USDC"

    for address in (NOT_LISTED, ID_NOT_AN_ADDRESS, LISTED.lower(), LISTED[:-1]):
        miss = await _screen(resources, address)
        assert not miss.hit and miss.match is None and miss.listing == loaded, address
        assert miss.hold_reason(settings) is None
        assert miss.hold_reason(settings.model_copy(update={"env": "production"})) is None

    async with resources.sessionmaker() as session:
        rows = (await session.scalars(select(SanctionedAddress))).all()
    assert {r.published_on for r in rows} == {days_ago(2)}


async def test_a_list_older_than_the_setting_is_stale(resources, settings):
    assert settings.sanctions_max_age_days == 7
    await _load(resources, sample_list(days_ago(6)))
    fresh = await _screen(resources, NOT_LISTED)
    assert not service.is_stale(settings, fresh.listing, fresh.checked_at)
    # A day on, the list is older than 7 days: its age counts from the start (UTC) of its
    # publish date.
    later = fresh.checked_at + dt.timedelta(days=1)
    assert service.is_stale(settings, fresh.listing, later)

    await _load(resources, sample_list(days_ago(7)), allow_older=True)
    stale = await _screen(resources, NOT_LISTED)
    assert service.is_stale(settings, stale.listing, stale.checked_at)
    assert stale.hold_reason(settings) is None
    production = settings.model_copy(update={"env": "production"})
    assert stale.hold_reason(production) == HELD_LIST_STALE
    longer = settings.model_copy(update={"sanctions_max_age_days": 30})
    assert not service.is_stale(longer, stale.listing, stale.checked_at)
    # A hit is a hit whatever the list's age.
    assert (await _screen(resources, LISTED)).hold_reason(production) == HELD_SANCTIONED


async def test_an_older_or_future_list_is_refused_and_the_loaded_one_kept(resources):
    await _load(resources, sample_list(days_ago(1), B))
    with pytest.raises(ListRefused, match="older than the one loaded"):
        await _load(resources, sample_list(days_ago(3)))
    with pytest.raises(ListRefused, match="in the future"):
        await _load(resources, sample_list(days_ago(-3)))
    assert (await _screen(resources, NOT_LISTED)).hit
    assert not (await _screen(resources, LISTED_UNDER_USDC)).hit
    # An operator may go back on purpose.
    await _load(resources, sample_list(days_ago(3)), allow_older=True)
    assert (await _screen(resources, LISTED_UNDER_USDC)).hit


async def test_a_reload_replaces_the_list_whole_for_a_reader_on_another_connection(resources):
    await _load(resources, sample_list(days_ago(2)))
    async with resources.sessionmaker() as loader:
        await loader.begin()
        await service.replace_list(loader, sample_list(days_ago(1), B))
        # Not committed: another connection still screens against the old list, whole.
        assert (await _screen(resources, LISTED_UNDER_USDC)).hit
        assert not (await _screen(resources, NOT_LISTED)).hit
        old = await _screen(resources, LISTED)
        assert old.hit and old.listing and old.listing.published_on == days_ago(2)
        await loader.commit()
    assert not (await _screen(resources, LISTED_UNDER_USDC)).hit
    new = await _screen(resources, NOT_LISTED)
    assert new.hit and new.listing and new.listing.published_on == days_ago(1)


async def test_readers_never_see_an_empty_list_while_it_is_reloaded(resources):
    await _load(resources, sample_list(days_ago(2)))
    reloading = True
    seen: list[tuple[int, bool]] = []

    async def read() -> None:
        while reloading:
            async with resources.sessionmaker() as session, session.begin():
                count = await session.scalar(select(func.count()).select_from(SanctionedAddress))
                result = await service.screen(session, LISTED)
            seen.append((count or 0, result.hit))
            await asyncio.sleep(0)

    reader = asyncio.create_task(read())
    try:
        for n in range(10):
            which = sample_list(days_ago(1), B) if n % 2 else sample_list(days_ago(2))
            await _load(resources, which, allow_older=True)
    finally:
        reloading = False
        await reader
    assert seen and set(seen) == {(2, True)}


async def test_two_loads_at_once_run_one_after_the_other(resources):
    async with resources.sessionmaker() as first:
        await first.begin()
        await service.replace_list(first, sample_list(days_ago(1), B))
        second = asyncio.create_task(_load(resources, sample_list(days_ago(2)), allow_older=True))
        await asyncio.sleep(0.5)
        assert not second.done()  # waiting for the first, not failing on its rows
        await first.commit()
    loaded = await asyncio.wait_for(second, 10)
    assert loaded.published_on == days_ago(2)
    assert (await _screen(resources, LISTED_UNDER_USDC)).hit


async def test_metrics_show_the_list_age_and_the_hits(client, resources, settings):
    def sample(exposition: str, name: str) -> float:
        line = next(x for x in exposition.splitlines() if x.startswith(name + " "))
        return float(line.split()[1])

    before = (await client.get("/metrics")).text
    assert sample(before, "refit_sanctions_list_age_seconds") == float("inf")
    assert sample(before, "refit_sanctions_list_max_age_seconds") == 7 * 86_400
    hits_before = sample(before, "refit_sanctions_hits_total")

    await _load(resources, sample_list(days_ago(3)))
    await _screen(resources, LISTED)
    await _screen(resources, NOT_LISTED)
    after = (await client.get("/metrics")).text
    age = sample(after, "refit_sanctions_list_age_seconds")
    assert 3 * 86_400 <= age < 4 * 86_400
    assert sample(after, "refit_sanctions_hits_total") == hits_before + 1

    # The same list, the setting lowered under its age: RefitSanctionsListStale's expression
    # (age > max age) holds on what /metrics now says.
    settings.sanctions_max_age_days = 2
    stale = (await client.get("/metrics")).text
    assert sample(stale, "refit_sanctions_list_age_seconds") > sample(
        stale, "refit_sanctions_list_max_age_seconds"
    )
