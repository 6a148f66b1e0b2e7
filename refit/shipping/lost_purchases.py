"""A label purchase whose carrier reply we never heard (a timeout, a crash between the
carrier's answer and our commit of it): found at the carrier, never bought again
(refit.shipping.labels, rule 4). The refund job and the label home use the same search."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import structlog
from sqlalchemy import select

from refit.carriers.interface import (
    Carrier,
    CarrierMessage,
    LabelTransaction,
    TransactionStatus,
)
from refit.models.shipping import LabelPurchase, PurchaseStatus
from refit.orders.service import get_order
from refit.resources import Resources
from refit.shipping import state
from refit.shipping.label_snapshot import Snapshot
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

# Slack around a lost purchase's search window: clock skew between our database and the
# carrier, and the moment between writing our row and the carrier creating its object.
SEARCH_MARGIN = dt.timedelta(minutes=10)


def metadata_for(order_id: uuid.UUID) -> str:
    return f"order:{order_id}"


def settle_seconds(resources: Resources, age: float) -> float:
    """How long a purchase attempt `age` seconds old may still create a transaction: a request
    we gave up on (timeout) may still be running at the carrier. Only after twice our own
    timeout does "not listed" mean "not bought"."""
    return max(0.0, 2 * resources.settings.shippo_timeout_seconds - age)


async def find_lost(
    resources: Resources,
    carrier: Carrier,
    order_id: uuid.UUID,
    rate_id: str,
    since: dt.datetime,
    until: dt.datetime,
    *,
    metadata: str | None = None,
) -> list[LabelTransaction]:
    """Transactions that our attempts, written between `since` and `until`, may have created
    for this order and rate (labelled `metadata`, by default the inbound label's); ERROR ones
    left out, the best first (SUCCESS, then pending)."""
    metadata = metadata or metadata_for(order_id)
    settle = dt.timedelta(seconds=2 * resources.settings.shippo_timeout_seconds)
    listed = await carrier.find_transactions(
        rate_id,
        metadata=metadata,
        created_after=since - SEARCH_MARGIN,
        created_before=until + settle + SEARCH_MARGIN,
    )
    # Matched again here on both keys: whatever the carrier filtered, only ours counts.
    found = [
        t
        for t in listed
        if t.metadata == metadata
        and t.rate_id == rate_id
        and t.status is not TransactionStatus.ERROR
    ]
    found.sort(key=lambda t: (t.status is not TransactionStatus.SUCCESS, t.transaction_id))
    return found


async def recover(
    resources: Resources, carrier: Carrier, order_id: uuid.UUID, snapshot: Snapshot
) -> LabelTransaction | None:
    """An earlier attempt called the carrier and never heard back: did it buy anything?"""
    assert snapshot.unanswered_since is not None and snapshot.unanswered_until is not None
    settle = settle_seconds(resources, snapshot.unanswered_age)
    if settle > 0:
        log.info("shipping.recovery_waits", order_id=str(order_id), seconds=round(settle, 1))
        await asyncio.sleep(settle)
    # SUCCESS first, then still-pending ones; any extra would be refunded by an operator.
    found = await find_lost(
        resources,
        carrier,
        order_id,
        snapshot.rate_id,
        snapshot.unanswered_since,
        snapshot.unanswered_until,
    )
    adopted = found[0] if found else None
    async with service_transaction(job=True) as session:
        rows = (
            await session.scalars(
                select(LabelPurchase)
                .where(LabelPurchase.id.in_(snapshot.unanswered))
                .order_by(LabelPurchase.created_at.desc())
                .with_for_update()
            )
        ).all()
        for index, row in enumerate(rows):
            if adopted is not None and index == 0:
                await state.update_purchase(
                    session,
                    row_id=row.id,
                    status=PurchaseStatus.PENDING,
                    transaction_id=adopted.transaction_id,
                )
            else:
                await state.update_purchase(
                    session,
                    row_id=row.id,
                    status=PurchaseStatus.REJECTED,
                    messages=[
                        CarrierMessage(text="no transaction found at the carrier for this try")
                    ],
                )
        if adopted is not None:
            order = await get_order(session, order_id, for_update=True)
            await state.set_transaction(session, order, adopted.transaction_id)
    log.warning(
        "shipping.purchase_recovered",
        order_id=str(order_id),
        adopted=adopted.transaction_id if adopted else None,
        also_found=[t.transaction_id for t in found[1:]],
    )
    return adopted
