"""Orders: the one door for status changes (`transition`) and the reads around it.

`transition()` is the only code that writes `orders.status` (with `move_steps.py`, its form for
a job's transaction sent as messages: the same check and writes, as statements);
`create_order()` is the only code that inserts an order. Both run in the caller's transaction
(a seller's request, an operator's request, or a job) and flush; the caller's session
dependency or job wrapper commits. A seller's role may only read orders: in a seller's
request the row is first found under RLS (another seller's order is a 404), then written as
the service (`transactions.as_service`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from refit import one_message, resources, transactions
from refit.errors import Conflict, NotFound
from refit.models.order import Order, OrderStatus, OrderStatusHistory
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


@dataclass(frozen=True)
class Created:
    """A new order as written (not read back), with its first history row."""

    order: Order
    first_move: dict[str, Any]


# Under the seller's RLS (and the explicit user_id, true for a service-role caller too): the
# quote, and the address FOR SHARE: a delete of this address (which locks it FOR UPDATE, then
# looks for live orders) waits for this order to commit and then sees it, instead of racing
# past it.
_QUOTE = "SELECT expires_at FROM quotes WHERE id = %(quote_id)s AND user_id = %(user_id)s"
_ADDRESS = (
    "SELECT id FROM shipping_addresses WHERE id = %(address_id)s AND user_id = %(user_id)s "
    "FOR SHARE"
)
# As the service: the order copies device and prices from the quote (never from the
# request); order_number, status and the times are the database's defaults, returned with
# the row, and the history row shares its created_at. Two creates racing on one quote both
# pass the checks; the unique index on orders.quote_id lets one in and the other finds
# nothing inserted (no error: the transaction stays usable, without a savepoint).
_INSERT = f"""
WITH o AS (
  INSERT INTO orders (id, user_id, quote_id, {", ".join(DEVICE_FIELDS)}, quoted_price_usd,
                      quoted_price_sol, quoted_price_lamports, shipping_address_id)
  SELECT %(id)s, q.user_id, q.id, {", ".join(f"q.{f}" for f in DEVICE_FIELDS)}, q.price_usd,
         q.price_sol, q.price_lamports, %(address_id)s
  FROM quotes q WHERE q.id = %(quote_id)s AND q.user_id = %(user_id)s
  ON CONFLICT (quote_id) DO NOTHING
  RETURNING *
), h AS (
  INSERT INTO order_status_history (order_id, from_status, status, actor, notes, metadata,
                                    created_at)
  SELECT o.id, NULL, o.status, %(actor)s, %(notes)s, 'null'::jsonb, o.created_at FROM o
  RETURNING from_status AS h_from_status, status AS h_status, actor AS h_actor,
            notes AS h_notes, created_at AS h_created_at
)
SELECT o.*, h.* FROM o, h
"""  # noqa: S608 (built from this module's constants; every value is a bound parameter)


async def create_order(session: AsyncSession, user_id: uuid.UUID, data: OrderCreate) -> Created:
    """An order in `pending` from the caller's own unexpired, unused quote and own address;
    device and prices are copied from the quote, never taken from the request.

    Two round trips: the checks under the seller's RLS, then the order, its history row and
    its event as the service (one_message.in_one_message)."""
    ids = {"quote_id": data.quote_id, "user_id": user_id}
    quotes, addresses = await one_message.in_one_message(
        session,
        one_message.Step(_QUOTE, ids),
        one_message.Step(_ADDRESS, {**ids, "address_id": data.shipping_address_id}),
    )
    if not quotes:
        raise NotFound(f"No quote {data.quote_id}", code="quote_not_found")
    expires_at: dt.datetime = quotes[0]["expires_at"]
    if expires_at <= dt.datetime.now(dt.UTC):
        raise Conflict(
            f"Quote {data.quote_id} expired at {expires_at.isoformat()}; ask for a new quote",
            code="quote_expired",
            extra={"expires_at": expires_at.isoformat()},
        )
    if not addresses:
        raise NotFound(f"No shipping address {data.shipping_address_id}", code="address_not_found")

    order_id, actor, notes = uuid.uuid4(), f"user:{user_id}", "order created"
    written, _ = await one_message.in_one_message(
        session,
        one_message.Step(
            _INSERT,
            {
                **ids,
                "id": order_id,
                "address_id": addresses[0]["id"],
                "actor": actor,
                "notes": notes,
            },
            as_service=True,
        ),
        # Sent with the insert; had it inserted nothing, the transaction rolls back with it.
        _publish_step(order_id, user_id, None, S.PENDING),
    )
    if not written:
        used_by = await session.scalar(
            select(Order.order_number).where(Order.quote_id == data.quote_id)
        )
        raise _quote_used(data.quote_id, used_by)
    row = written[0]
    order = Order(**{c.key: row[c.columns[0].name] for c in Order.__mapper__.column_attrs})
    first_move = {k.removeprefix("h_"): v for k, v in row.items() if k.startswith("h_")}
    _log_move(order, None, S.PENDING, actor)
    await follow_ups.after_move(session, order, None, S.PENDING, notes=notes)
    return Created(order=order, first_move=first_move)


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


@dataclass(frozen=True)
class Locked:
    """An order read FOR UPDATE in the caller's transaction, and the database's clock then."""

    order: Order
    at: dt.datetime


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
    _check_move(order, to_status, expected_from)
    async with transactions.as_service(session):
        _move(order, to_status, now)
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


def _check_move(
    order: Order, to_status: OrderStatus, expected_from: set[OrderStatus] | None
) -> None:
    """The state machine's word on the move (409 when it says no)."""
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


def _move(order: Order, to_status: OrderStatus, now: dt.datetime) -> dict[str, Any]:
    """The move's columns, set on `order`; returned by name."""
    values: dict[str, Any] = {"status": to_status, "status_changed_at": now}
    stamp = STAMPS.get(to_status)
    if stamp is not None:
        values[stamp] = now
    if to_status is S.OFFER_PENDING:
        days = resources.current().settings.offer_response_days
        values["offer_expires_at"] = now + dt.timedelta(days=days)
    for name, value in values.items():
        setattr(order, name, value)
    return values


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
    _log_move(order, from_status, to_status, actor)
    step = _publish_step(order.id, order.user_id, from_status, to_status)
    await session.execute(text("SELECT pg_notify(:channel, :payload)"), step.params)
    await follow_ups.after_move(
        session, order, from_status, to_status, notes=notes, metadata=metadata
    )


def _log_move(
    order: Order, from_status: OrderStatus | None, to_status: OrderStatus, actor: str
) -> None:
    log.info(
        "orders.transition",
        order_id=str(order.id),
        from_status=from_status.value if from_status else None,
        to_status=to_status.value,
        actor=actor,
    )


def _publish_step(
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    from_status: OrderStatus | None,
    to_status: OrderStatus,
) -> one_message.Step:
    """The move's realtime event: one NOTIFY, delivered only if the transaction commits."""
    payload = {
        "order_id": str(order_id),
        "user_id": str(user_id),
        "from_status": from_status.value if from_status else None,
        "status": to_status.value,
    }
    return one_message.Step(
        "SELECT pg_notify(%(channel)s, %(payload)s)",
        {"channel": ORDER_EVENTS_CHANNEL, "payload": json.dumps(payload)},
        as_service=True,
    )
