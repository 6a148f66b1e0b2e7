"""Screening payout recipients against OFAC's SDN list, and replacing the list.

`screen()` is what the payout code asks before it signs: one SELECT gives the hit (if any) and
the list's age. A hit holds the payout (reason `sanctions`) for the four-eyes release; a list
older than REFIT_SANCTIONS_MAX_AGE_DAYS is an alert and, in production, holds new payouts.
`replace_list()` is the list's one writer (`refit sanctions load`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.ext.asyncio import AsyncSession

from refit.metrics import SANCTIONS_HITS
from refit.models.sanction import SanctionedAddress, SanctionsList
from refit.sanctions.sdn_file import SdnList
from refit.settings import Settings

log = structlog.get_logger(__name__)

# The reasons a payout is held for, by screening.
HELD_SANCTIONED = "sanctions"
HELD_LIST_STALE = "sanctions list stale"
# OFAC dates its list in Washington; a date a day ahead of UTC is still today somewhere.
_FUTURE_GRACE = dt.timedelta(days=1)


class ListRefused(ValueError):
    """A list that would make screening worse than the one loaded: the message says why."""


@dataclass(frozen=True)
class LoadedList:
    published_on: dt.date
    loaded_at: dt.datetime
    record_count: int
    address_count: int
    source_sha256: str


@dataclass(frozen=True)
class Match:
    """The list's entry naming the address screened."""

    sdn_uid: int
    sdn_name: str
    id_type: str


@dataclass(frozen=True)
class ScreeningResult:
    address: str
    match: Match | None
    # The list screened against; None: no list was ever loaded.
    listing: LoadedList | None
    # The database's clock when it answered.
    checked_at: dt.datetime

    @property
    def hit(self) -> bool:
        return self.match is not None

    @property
    def age(self) -> dt.timedelta | None:
        return list_age(self.listing, self.checked_at)

    def hold_reason(self, settings: Settings) -> str | None:
        """Why the payout to this address must not be signed now, or None."""
        if self.hit:
            return HELD_SANCTIONED
        if settings.is_production and is_stale(settings, self.listing, self.checked_at):
            return HELD_LIST_STALE
        return None


def list_age(listing: LoadedList | None, now: dt.datetime) -> dt.timedelta | None:
    """How old the list is at `now`, from the start (UTC) of its publish date."""
    if listing is None:
        return None
    published = dt.datetime.combine(listing.published_on, dt.time(), tzinfo=dt.UTC)
    return now - published


def is_stale(settings: Settings, listing: LoadedList | None, now: dt.datetime) -> bool:
    """Older than REFIT_SANCTIONS_MAX_AGE_DAYS, or never loaded."""
    age = list_age(listing, now)
    return age is None or age > dt.timedelta(days=settings.sanctions_max_age_days)


_SCREEN = text("""
SELECT now() AS checked_at, l.published_on, l.loaded_at, l.record_count, l.address_count,
       l.source_sha256, a.sdn_uid, a.sdn_name, a.id_type
FROM (SELECT 1) AS one
LEFT JOIN sanctions_list l ON true
LEFT JOIN sanctioned_addresses a ON a.address = :address
""")


async def screen(session: AsyncSession, address: str) -> ScreeningResult:
    """The recipient `address` against the list loaded, in one SELECT: the entry naming it, if
    any, and the list's age. A hit is counted and logged as an error (someone must look)."""
    row = (await session.execute(_SCREEN, {"address": address})).one()
    listing = None
    if row.published_on is not None:
        listing = LoadedList(
            row.published_on,
            row.loaded_at,
            row.record_count,
            row.address_count,
            row.source_sha256,
        )
    match = None if row.sdn_uid is None else Match(row.sdn_uid, row.sdn_name, row.id_type)
    result = ScreeningResult(address, match, listing, row.checked_at)
    if match is not None:
        SANCTIONS_HITS.inc()
        log.error(
            "sanctions.hit",
            address=address,
            sdn_uid=match.sdn_uid,
            sdn_name=match.sdn_name,
            id_type=match.id_type,
            list_published_on=listing.published_on.isoformat() if listing else None,
        )
    return result


async def current_list(session: AsyncSession) -> LoadedList | None:
    found = await session.scalar(select(SanctionsList))
    if found is None:
        return None
    return LoadedList(
        found.published_on,
        found.loaded_at,
        found.record_count,
        found.address_count,
        found.source_sha256,
    )


async def replace_list(
    session: AsyncSession, sdn: SdnList, *, allow_older: bool = False
) -> LoadedList:
    """Replace the list loaded with `sdn`, in the caller's transaction: screening meanwhile
    reads the old list (PostgreSQL's snapshot), then the new one once it commits.

    Refused: a list published in the future (it would never go stale), or one older than the
    list loaded (addresses sanctioned since would pass) unless `allow_older`."""
    # Readers (ACCESS SHARE) go on; a second load waits here for the first to commit
    # rather than failing on the addresses the first inserted.
    await session.execute(text("LOCK TABLE sanctions_list IN SHARE ROW EXCLUSIVE MODE"))
    now = await session.scalar(select(func.now()))
    assert now is not None
    if dt.datetime.combine(sdn.published_on, dt.time(), tzinfo=dt.UTC) > now + _FUTURE_GRACE:
        raise ListRefused(f"the list is dated {sdn.published_on}, in the future: refused")
    loaded = await current_list(session)
    if loaded is not None and sdn.published_on < loaded.published_on and not allow_older:
        raise ListRefused(
            f"the list is dated {sdn.published_on}, older than the one loaded "
            f"({loaded.published_on}): refused (--allow-older to load it anyway)"
        )
    await session.execute(delete(SanctionedAddress))
    if sdn.addresses:
        await session.execute(
            insert(SanctionedAddress),
            [
                {
                    "address": a.address,
                    "sdn_uid": a.sdn_uid,
                    "sdn_name": a.sdn_name,
                    "id_type": a.id_type,
                    "published_on": sdn.published_on,
                }
                for a in sdn.addresses
            ],
        )
    values = {
        "published_on": sdn.published_on,
        "loaded_at": now,
        "record_count": sdn.record_count,
        "address_count": len(sdn.addresses),
        "source_sha256": sdn.sha256,
    }
    await session.execute(
        upsert(SanctionsList)
        .values(id=1, **values)
        .on_conflict_do_update(index_elements=[SanctionsList.id], set_=values)
    )
    log.info(
        "sanctions.loaded",
        published_on=sdn.published_on.isoformat(),
        addresses=len(sdn.addresses),
        record_count=sdn.record_count,
        sha256=sdn.sha256,
    )
    return LoadedList(sdn.published_on, now, sdn.record_count, len(sdn.addresses), sdn.sha256)
