"""The sanctions screening every signing passes, under the payout's row lock (tasks.py): a
recipient on the list, or in production a stale list, holds the payout unsigned."""

from __future__ import annotations

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.models.payout import HoldReason, Payout, PayoutEvent, PayoutStatus
from refit.payouts import service, states
from refit.sanctions import service as sanctions
from refit.settings import Settings

log = structlog.get_logger("refit.payouts.tasks")


async def held_before_signing(session: AsyncSession, payout: Payout, settings: Settings) -> bool:
    """Before every signing, under the payout's lock: the recipient against the sanctions list.
    A hit (or, in production, a stale list) holds the payout unsigned; only the four-eyes
    release (recovery.release) moves it on, and holds against the list it was decided on."""
    screening = await sanctions.screen(session, payout.recipient)
    reason = screening.hold_reason(settings)
    if reason is None:
        return False
    hold = (
        HoldReason.SANCTIONS
        if reason == sanctions.HELD_SANCTIONED
        else HoldReason.SANCTIONS_LIST_STALE
    )
    # Two admins released this very hold on this very list (the hold and the list's sha256 are
    # in the release's event): their decision stands until another list is loaded. The release
    # of a stale list's hold decided nothing about a hit on a list loaded since, nor a release
    # on one list about the next.
    released = await session.scalar(
        select(func.count())
        .select_from(PayoutEvent)
        .where(
            PayoutEvent.payout_id == payout.id,
            PayoutEvent.from_status == PayoutStatus.HELD,
            PayoutEvent.to_status == PayoutStatus.PENDING,
            PayoutEvent.evidence["released_hold"].astext == hold.value,
            PayoutEvent.evidence["list_sha256"].astext.is_not_distinct_from(
                screening.listing.source_sha256 if screening.listing else None
            ),
        )
    )
    if released:
        return False
    match = screening.match
    await states.write(
        session,
        payout,
        PayoutStatus.HELD,
        actor=service.ACTOR,
        hold=hold,
        error=f"held before signing: {reason}",
        evidence={
            "address": payout.recipient,
            "sdn_uid": match.sdn_uid if match else None,
            "list_published_on": (
                screening.listing.published_on.isoformat() if screening.listing else None
            ),
        },
    )
    log.error("payouts.held", order_id=str(payout.order_id), reason=hold.value)
    return True
