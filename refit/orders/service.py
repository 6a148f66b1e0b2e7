"""Orders: the one door for status changes (`transition`) and the reads around it.

`transition()` is the only code that writes `orders.status`; `create_order()` is the only
code that inserts an order. Both run in the caller's transaction (a seller's request, an
operator's request, or a job) and flush; the caller's session dependency or job wrapper
commits. A seller's role may only read orders: in a seller's request the row is first found
under RLS (another seller's order is a 404), then written as the service
(`transactions.as_service`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from refit import resources, transactions
from refit.errors import Conflict, NotFound
from refit.models.address import ShippingAddress
from refit.models.order import Order, OrderStatus, OrderStatusHistory
from refit.models.quote import Quote
from refit.orders import follow_ups
from refit.orders.schemas import OrderCreate
from refit.orders.states import ALLOWED_MOVES, SELLER_CANCELLABLE, STAMPS

log = structlog.get_logger(__name__)

S = OrderStatus
_ACTOR = re.compile(r"(user|operator|system):\S.*")

# What the order copies from its quote about the device (never from the request).
DEVICE_FIELDS = (
    "device_brand",
    "device_model",
    "device_storage",
    "device_category",
    "device_condition",
    "device_details",
)

# Realtime: one NOTIFY per change, delivered by PostgreSQL only if the transaction commits.
ORDER_EVENTS_CHANNEL = "order_events"


def order_not_found(order_id: uuid.UUID | str) -> NotFound:
    return NotFound(f"No order {order_id}", code="order_not_found")


async def create_order(session: AsyncSession, user_id: uuid.UUID, data: OrderCreate) -> Order:
    """An order in `pending` from the caller's own unexpired, unused quote and own address;
    device and prices are copied from the quote, never taken from the request."""
    # Under the seller's session RLS already hides other sellers' quotes and addresses; the
    # explicit user_id filters keep that true for a service-role caller too.
    quote = await session.scalar(
        select(Quote).where(Quote.id == data.quote_id, Quote.user_id == user_id)
    )
    if quote is None:
        raise NotFound(f"No quote {data.quote_id}", code="quote_not_found")
    now = dt.datetime.now(dt.UTC)
    if quote.expires_at <= now:
        raise Conflict(
            f"Quote {quote.id} expired at {quote.expires_at.isoformat()}; ask for a new quote",
            code="quote_expired",
            extra={"expires_at": quote.expires_at.isoformat()},
        )
    # FOR SHARE: a delete of this address (which locks it FOR UPDATE, then looks for live
    # orders) waits for this order to commit and then sees it, instead of racing past it.
    address_id = await session.scalar(
        select(ShippingAddress.id)
        .where(ShippingAddress.id == data.shipping_address_id, ShippingAddress.user_id == user_id)
        .with_for_update(read=True)
    )
    if address_id is None:
        raise NotFound(f"No shipping address {data.shipping_address_id}", code="address_not_found")
    used_by = await session.scalar(select(Order.order_number).where(Order.quote_id == quote.id))
    if used_by is not None:
        raise _quote_used(quote.id, used_by)

    order = Order(
        id=uuid.uuid4(),
        user_id=user_id,
        quote_id=quote.id,
        **{field: getattr(quote, field) for field in DEVICE_FIELDS},
        quoted_price_usd=quote.price_usd,
        quoted_price_sol=quote.price_sol,
        quoted_price_lamports=quote.price_lamports,
        shipping_address_id=address_id,
    )
    async with transactions.as_service(session):
        try:
            # Two creates racing on one quote both pass the check above; the unique index on
            # orders.quote_id lets one in. The savepoint keeps this transaction usable.
            async with session.begin_nested():
                session.add(order)
                await session.flush()
        except IntegrityError as exc:
            if "uq_orders_quote_id" in str(exc.orig):
                raise _quote_used(quote.id, None) from exc
            raise
        # order_number, status and created_at are the database's defaults.
        await session.refresh(order)
        await _record_move(
            session,
            order,
            None,
            OrderStatus.PENDING,
            actor=f"user:{user_id}",
            notes="order created",
            at=order.created_at,
        )
    return order


def _quote_used(quote_id: uuid.UUID, order_number: str | None) -> Conflict:
    where = f" by order {order_number}" if order_number else ""
    return Conflict(
        f"Quote {quote_id} was already used{where}; ask for a new quote",
        code="quote_already_used",
    )


async def get_order(
    session: AsyncSession, order_id: uuid.UUID, *, for_update: bool = False
) -> Order:
    """The order as the session's role may see it (a seller: only their own), else 404.

    `for_update`: locked until the transaction ends (others wait) and re-read even if this
    session holds a copy. In a seller's session, change it only inside `transactions.as_service`.
    """
    if for_update:
        return (await _lock(session, order_id))[0]
    found = await session.scalar(select(Order).where(Order.id == order_id))
    if found is None:
        raise order_not_found(order_id)
    return found


async def _lock(session: AsyncSession, order_id: uuid.UUID) -> tuple[Order, dt.datetime]:
    if transactions.acting_user(session) is not None:
        # The RLS-checked read: another seller's order does not exist for this session. The
        # lock itself needs the UPDATE privilege, which only the service role has.
        if await session.scalar(select(Order.id).where(Order.id == order_id)) is None:
            raise order_not_found(order_id)
    # populate_existing: a copy already in the session may be stale; the lock is only worth
    # something if we decide on the row as it is now. clock_timestamp() comes with the row so
    # the history row and the stamp column carry one and the same instant.
    async with transactions.as_service(session):
        row = (
            await session.execute(
                select(Order, func.clock_timestamp())
                .where(Order.id == order_id)
                .with_for_update(of=Order)
                .execution_options(populate_existing=True)
            )
        ).one_or_none()
    if row is None:
        raise order_not_found(order_id)
    return row[0], row[1]


async def cancel_before_transit(
    session: AsyncSession, order_id: uuid.UUID, *, actor: str, reason: str
) -> Order:
    """Cancel an order whose device is not on its way yet (pending, processing_shipment,
    awaiting_shipment), for its seller or an operator; a label bought or being bought is
    refunded by the move's follow-up."""
    return await transition(
        session,
        order_id,
        OrderStatus.CANCELLED,
        actor=actor,
        notes=reason,
        expected_from=set(SELLER_CANCELLABLE),
    )


async def transition(
    session: AsyncSession,
    order_id: uuid.UUID,
    to_status: OrderStatus,
    *,
    actor: str,
    notes: str | None = None,
    metadata: dict[str, Any] | None = None,
    expected_from: set[OrderStatus] | None = None,
) -> Order:
    """Move an order to `to_status` if the state machine allows it from its current status
    (and, given `expected_from`, only from one of those): 409 `invalid_transition` otherwise.

    `actor` is "user:<uuid>", "operator:<name>" or "system:<job>".
    """
    if not _ACTOR.fullmatch(actor):
        raise ValueError(f"actor must be user:/operator:/system:<who>, got {actor!r}")
    to_status = OrderStatus(to_status)
    order, now = await _lock(session, order_id)
    from_status = order.status
    if (expected_from is not None and from_status not in expected_from) or (
        to_status not in ALLOWED_MOVES[from_status]
    ):
        raise Conflict(
            f"Order {order.order_number} is {from_status.value}; "
            f"it cannot move to {to_status.value}",
            code="invalid_transition",
            extra={"current_status": from_status.value, "requested_status": to_status.value},
        )

    if (
        from_status is S.OFFER_PENDING
        and to_status is S.COMPLETED
        and order.offer_accepted_at is None
    ):
        # Paying a revised offer needs the seller's yes; never pay one they did not accept.
        raise Conflict(
            f"The seller has not accepted the revised offer for {order.order_number}",
            code="offer_not_accepted",
        )

    async with transactions.as_service(session):
        order.status = to_status
        order.status_changed_at = now
        stamp = STAMPS.get(to_status)
        if stamp is not None:
            setattr(order, stamp, now)
        if to_status is S.OFFER_PENDING:
            days = resources.current().settings.offer_response_days
            order.offer_expires_at = now + dt.timedelta(days=days)
        await _record_move(
            session,
            order,
            from_status,
            to_status,
            actor=actor,
            notes=notes,
            metadata=metadata,
            at=now,
        )
    return order


async def _record_move(
    session: AsyncSession,
    order: Order,
    from_status: OrderStatus | None,
    to_status: OrderStatus,
    *,
    actor: str,
    at: dt.datetime,
    notes: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """The history row, the realtime event and the follow-ups of one move, in its transaction.
    The one door's inside: only create_order and transition call it (as the service)."""
    session.add(
        OrderStatusHistory(
            order_id=order.id,
            from_status=from_status,
            status=to_status,
            actor=actor,
            notes=notes,
            metadata_=metadata,
            created_at=at,
        )
    )
    await session.flush()
    log.info(
        "orders.transition",
        order_id=str(order.id),
        from_status=from_status.value if from_status else None,
        to_status=to_status.value,
        actor=actor,
    )
    await _publish(session, order, from_status, to_status)
    await follow_ups.after_move(
        session, order, from_status, to_status, notes=notes, metadata=metadata
    )


async def _publish(
    session: AsyncSession, order: Order, from_status: OrderStatus | None, to_status: OrderStatus
) -> None:
    payload = {
        "order_id": str(order.id),
        "user_id": str(order.user_id),
        "from_status": from_status.value if from_status else None,
        "status": to_status.value,
    }
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": ORDER_EVENTS_CHANNEL, "payload": json.dumps(payload)},
    )
