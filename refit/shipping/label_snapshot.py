"""The label job's first step: the order under its lock, the attempts whose carrier replies
never came, and this attempt's 'started' row, committed with them in one message when
nothing was bought or asked for before (refit.shipping.labels, rule 1)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from refit import queue
from refit.carriers.interface import Carrier, CarrierRejected
from refit.models import OrderStatus
from refit.one_message import Step, job_messages
from refit.orders.service import order_not_found
from refit.shipping import state


@dataclass(frozen=True)
class Snapshot:
    rate_id: str
    transaction_id: str | None
    unanswered: list[uuid.UUID]  # purchase rows still 'started': replies we never got
    # Seconds since the newest of them was written (just before its carrier call).
    unanswered_age: float
    # When the oldest and the newest of them were written (database clock).
    unanswered_since: dt.datetime | None = None
    unanswered_until: dt.datetime | None = None
    # This attempt's 'started' row, committed with the snapshot when none came before it.
    started: Started | None = None


@dataclass(frozen=True)
class Started:
    """An attempt's 'started' row, committed: the carrier may be called for it."""

    id: uuid.UUID
    rate_id: str


# The order under its lock, and its attempts still 'started' for the chosen rate (replies we
# never got), read in the snapshot's one message.
_LOCKED_ORDER = (
    "SELECT status, label_file_key, shipping_rate_id, label_transaction_id FROM orders "
    "WHERE id = %(order_id)s FOR UPDATE"
)
_UNANSWERED = (
    "SELECT p.id, extract(epoch FROM now() - p.created_at) AS age, p.created_at "
    "FROM shipping_label_purchases p JOIN orders o ON o.id = p.order_id "
    "WHERE p.order_id = %(order_id)s AND p.status = 'started' "
    "AND p.rate_id = o.shipping_rate_id"
)
# When this attempt may buy at once: `take_snapshot`'s decision, in SQL over the locked order `o`,
# so its 'started' row is written in the same message (and checked against the decision).
_NOTHING_ASKED_YET = (
    "o.status = 'processing_shipment' AND coalesce(o.label_file_key, '') = '' "
    "AND coalesce(o.shipping_rate_id, '') <> '' AND o.label_transaction_id IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM shipping_label_purchases p WHERE p.order_id = o.id "
    "AND p.status = 'started' AND p.rate_id = o.shipping_rate_id)"
)


async def take_snapshot(
    order_id: uuid.UUID, carrier: Carrier, *, job_id: int | None, attempt: int
) -> Snapshot | str:
    """The order under its lock; and the attempt's 'started' row with it when nothing was
    bought or asked for before (one transaction fewer in the common case). One message: the
    reads, the row (written only then) and COMMIT."""
    ids = {"order_id": order_id}
    async with job_messages(queue.job_connections()) as transaction:
        orders, rows, inserted = await transaction.send(
            Step(_LOCKED_ORDER, ids),
            Step(_UNANSWERED, ids),
            state.start_purchase_step(
                order_id,
                carrier_name=carrier.name,
                job_id=job_id,
                attempt=attempt,
                when=_NOTHING_ASKED_YET,
            ),
            commit=True,
        )
    started = Started(inserted[0]["id"], inserted[0]["rate_id"]) if inserted else None
    if not orders:
        raise order_not_found(order_id)
    order = orders[0]
    decided = _decide(order, rows, started)
    if isinstance(decided, str):
        return decided
    return Snapshot(
        order["shipping_rate_id"],
        order["label_transaction_id"],
        [r["id"] for r in rows],
        min((float(r["age"]) for r in rows), default=0.0),
        min((r["created_at"] for r in rows), default=None),
        max((r["created_at"] for r in rows), default=None),
        started=started,
    )


_NO_RATE = "the order has no chosen rate"


def _decide(
    order: dict[str, Any], rows: list[dict[str, Any]], started: Started | None
) -> str | None:
    """What the snapshot says of the locked order: a reason to do nothing, else None. The
    'started' row was written iff this attempt may buy at once: checked here too."""
    if order["status"] != OrderStatus.PROCESSING_SHIPMENT:
        outcome: str | None = f"skipped: order is {order['status']}"
    elif order["label_file_key"]:
        outcome = "skipped: label already stored"
    elif not order["shipping_rate_id"]:
        outcome = _NO_RATE
    else:
        outcome = None
    may_buy = outcome is None and order["label_transaction_id"] is None and not rows
    if may_buy != (started is not None):
        raise AssertionError(f"order {order}: the started row disagrees with the decision")
    if outcome == _NO_RATE:
        raise CarrierRejected(_NO_RATE)
    return outcome
