"""Receiving and inspecting a device: the operators' moves and the verdict.

The verdict prices what was found from the catalog (refit/catalog/prices.py), never from a
typed number; only an admin may override that price, with a reason, and the override is kept.
Then, under the order's row lock:
- unbuyable (activation lock on, or it does not power on and is not graded `broken`): the
  device goes home, inspecting → returning;
- the price found is at least the quote: the quoted USD price stands (the price promise); the
  order stays in inspecting, outcome `as_quoted`, waiting for its payout
  (`inspections.outcome = 'as_quoted'` on an order still in inspecting), and the seller is
  emailed (`order_inspected`);
- below the quote: the catalog's (or the admin's) price is offered, inspecting →
  offer_pending; the seller sees the notes and photos with the offer.

Status moves go through orders.service.transition() with the operator as the actor, the final
price through orders.prices.set_final_price().

An operator sends a device home (`send_home`) from inspecting or offer_pending, never once it
is being paid (payouts' own answer); the label home is shipping's job, deferred by task name
(orders/follow_ups.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from pydantic_core import to_jsonable_python
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import queue
from refit.admin.deps import OperatorPrincipal
from refit.catalog.prices import catalog_price
from refit.errors import Conflict, ProblemError, Unprocessable
from refit.inspection import checklist as checks
from refit.inspection.schemas import InspectionCreate
from refit.models import OperatorRole, Order, OrderStatus
from refit.models.inspection import Inspection, Outcome
from refit.orders import follow_ups, offers
from refit.orders.prices import set_final_price
from refit.orders.service import get_order, transition
from refit.payouts.service import payout_requested
from refit.shipping.returns import label_home_bought

log = structlog.get_logger(__name__)

S = OrderStatus
# Grades whose definition covers a device that does not turn on (catalog.json: "broken").
DEAD_DEVICE_GRADES = frozenset({"broken"})
INSPECTED_EMAIL = "order_inspected"


async def receive(session: AsyncSession, order_id: uuid.UUID, operator: OperatorPrincipal) -> Order:
    """The parcel is at the warehouse → received. From awaiting_shipment (no carrier scan ever
    came) it goes through shipped first: both moves are in the history, by the operator."""
    order = await get_order(session, order_id, for_update=True)
    if order.status is S.AWAITING_SHIPMENT:
        await transition(
            session,
            order_id,
            S.SHIPPED,
            actor=operator.actor,
            notes="received at the warehouse without a carrier scan",
            expected_from={S.AWAITING_SHIPMENT},
        )
    return await transition(
        session,
        order_id,
        S.RECEIVED,
        actor=operator.actor,
        notes="received at the warehouse",
        expected_from={S.SHIPPED},
    )


async def start_inspection(
    session: AsyncSession, order_id: uuid.UUID, operator: OperatorPrincipal
) -> Order:
    """received → inspecting."""
    return await transition(
        session,
        order_id,
        S.INSPECTING,
        actor=operator.actor,
        notes="inspection started",
        expected_from={S.RECEIVED},
    )


async def send_home(
    session: AsyncSession, order_id: uuid.UUID, operator: OperatorPrincipal
) -> tuple[Order, int | None]:
    """The order moved to returning (or left there) and the job buying its label home: from
    inspecting (unbuyable), from offer_pending (the seller's no, given to an operator), or
    again while returning when the label home failed. The job's id, None if one is running."""
    order = await get_order(session, order_id, for_update=True)
    # Under the order's lock, as the pay request takes it: never home once being paid.
    if await payout_requested(session, order.id):
        raise Conflict(
            f"Order {order.order_number} is being paid; it cannot go home",
            code="payout_requested",
        )
    job_id: int | None
    if order.status is S.RETURNING:
        bought = await label_home_bought(session, order.id)
        if bought is not None:
            raise Conflict(
                f"The label home of order {order.order_number} is already {bought}",
                code="return_label_bought",
            )
        job_id = await follow_ups.defer(session, follow_ups.PURCHASE_RETURN_LABEL, order.id)
    elif order.status is S.OFFER_PENDING and order.offer_accepted_at is not None:
        # Accepted, and its payout cancelled (none requested: checked above): the seller's yes
        # stands, but an admin decided not to pay; the device goes home.
        order = await transition(
            session,
            order.id,
            S.RETURNING,
            actor=operator.actor,
            notes="sent home by an operator after its payout was cancelled",
            expected_from={S.OFFER_PENDING},
        )
        job_id = await follow_ups.waiting_job(session, follow_ups.PURCHASE_RETURN_LABEL, order.id)
    elif order.status is S.OFFER_PENDING:
        # The seller's no, given to an operator: the same checks as the seller's own decline.
        order = await offers.decline_offer(session, order.id, actor=operator.actor)
        job_id = await follow_ups.waiting_job(session, follow_ups.PURCHASE_RETURN_LABEL, order.id)
    elif order.status is S.INSPECTING:
        order = await transition(
            session,
            order.id,
            S.RETURNING,
            actor=operator.actor,
            notes="sent home by an operator",
            expected_from={S.INSPECTING},
        )
        job_id = await follow_ups.waiting_job(session, follow_ups.PURCHASE_RETURN_LABEL, order.id)
    else:
        raise Conflict(
            f"Order {order.order_number} is {order.status}; a device goes home from "
            "inspecting or offer_pending (or again while returning)",
            code="invalid_order_state",
        )
    log.info(
        "shipping.return_requested",
        order_id=str(order.id),
        operator_id=str(operator.id),
        job_id=job_id,
    )
    return order, job_id


def luhn_ok(digits: str) -> bool:
    """The Luhn check digit of an IMEI (15 digits, the last one the check)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _check_input(data: InspectionCreate, operator: OperatorPrincipal) -> None:
    overriding = data.override_price_usd is not None or data.override_reason is not None
    if overriding and operator.role is not OperatorRole.ADMIN:
        raise ProblemError(
            "Only an admin operator may override the catalog price",
            status=403,
            code="operator_forbidden",
        )
    if overriding and (data.override_price_usd is None or not data.override_reason):
        raise Unprocessable(
            "An override needs both override_price_usd and override_reason",
            code="override_reason_required",
        )
    if data.override_price_usd is not None and data.override_price_usd <= 0:
        # An offer of $0 accepted could never be paid, declined or expire: a device worth
        # nothing goes home instead (send it home).
        raise Unprocessable(
            "An override price must be above zero; send the device home instead",
            code="override_price_not_positive",
        )
    problem = identity_problem(data.imei, data.serial)
    if problem is not None:
        raise problem


def identity_problem(imei: str | None, serial: str | None) -> Unprocessable | None:
    """What is wrong with the device's identity as recorded, if anything: the verdict's rule,
    also asked by the dashboard's form so it can show every problem of a submit at once."""
    if imei is None and serial is None:
        return Unprocessable(
            "Record the device's IMEI or its serial number", code="device_identity_required"
        )
    if imei is not None and not (
        len(imei) == 15 and imei.isascii() and imei.isdigit() and luhn_ok(imei)
    ):
        return Unprocessable(
            "The IMEI must be 15 digits with a valid check digit (Luhn)", code="invalid_imei"
        )
    return None


def unbuyable_reason(data: InspectionCreate) -> str | None:
    checklist = data.checklist
    if not checklist.activation_lock_off:
        return "activation lock is on"
    if not checklist.powers_on and data.grade.lower() not in DEAD_DEVICE_GRADES:
        return f"does not power on (graded {data.grade.lower()})"
    return None


async def inspect(
    session: AsyncSession,
    order_id: uuid.UUID,
    operator: OperatorPrincipal,
    data: InspectionCreate,
) -> tuple[Order, Inspection]:
    """Record the verdict of an order in inspecting (once): see the module's docstring."""
    _check_input(data, operator)
    order = await get_order(session, order_id, for_update=True)
    if order.status is not S.INSPECTING:
        raise Conflict(
            f"Order {order.order_number} is {order.status.value}; a verdict needs an order in "
            "inspecting",
            code="invalid_order_state",
            extra={"current_status": order.status.value},
        )
    if await session.scalar(select(Inspection.id).where(Inspection.order_id == order.id)):
        raise Conflict(
            f"Order {order.order_number} already has its verdict", code="already_inspected"
        )
    foreign = checks.not_for(order.device_category, data.checklist.items)
    if foreign:
        raise Unprocessable(
            f"Not checks of a {checks.category_of(order.device_category)}: " + ", ".join(foreign),
            code="checklist_item_not_for_device",
        )
    found = await catalog_price(
        session,
        order.device_brand,
        order.device_model,
        data.storage or order.device_storage,
        data.grade,
        # A device quoted before its model left the catalog is still priced by it.
        active_only=False,
    )
    price = data.override_price_usd if data.override_price_usd is not None else found.price_usd
    reason = unbuyable_reason(data)
    if reason is None and price <= 0:
        # A final price must be above zero: an offer of $0 could never be paid (and, once
        # accepted, never declined or expire). The catalog pricing a grade at $0 sends it home.
        reason = "priced at $0 by the catalog"
    if reason is not None:
        outcome, final = Outcome.UNBUYABLE, None
    elif price >= order.quoted_price_usd:
        outcome, final = Outcome.AS_QUOTED, order.quoted_price_usd
    else:
        outcome, final = Outcome.REVISED_OFFER, price

    inspection = Inspection(
        id=uuid.uuid4(),
        order_id=order.id,
        operator_id=operator.id,
        grade=found.grade.code,
        storage=found.variant.storage,
        imei=data.imei,
        serial=data.serial,
        checklist=data.checklist.model_dump(mode="json"),
        notes=data.notes,
        catalog_price_usd=found.price_usd,
        override_price_usd=data.override_price_usd,
        override_reason=data.override_reason if data.override_price_usd is not None else None,
        override_by=operator.id if data.override_price_usd is not None else None,
        final_price_usd=final,
        outcome=outcome,
    )
    session.add(inspection)
    await session.flush()
    metadata = {
        "inspection_id": str(inspection.id),
        "grade": inspection.grade,
        "catalog_price_usd": str(found.price_usd),
        "final_price_usd": str(final) if final is not None else None,
        "override": data.override_price_usd is not None,
    }
    if outcome is Outcome.UNBUYABLE:
        order = await transition(
            session,
            order.id,
            S.RETURNING,
            actor=operator.actor,
            notes=f"cannot be bought: {reason}",
            metadata=metadata,
            expected_from={S.INSPECTING},
        )
    else:
        assert final is not None
        # Before the move: the offer email (a follow-up of the move) shows the final price.
        await set_final_price(session, order, final)
        if outcome is Outcome.REVISED_OFFER:
            order = await transition(
                session,
                order.id,
                S.OFFER_PENDING,
                actor=operator.actor,
                # The move's notes are the inspector's: the seller reads them with the offer.
                notes=data.notes or "revised offer after inspection",
                metadata=metadata,
                expected_from={S.INSPECTING},
            )
        else:
            await _email_inspected(session, order, inspection)
    log.info(
        "inspection.verdict",
        order_id=str(order.id),
        operator_id=str(operator.id),
        outcome=outcome.value,
        final_price_usd=str(final) if final is not None else None,
        override=data.override_price_usd is not None,
    )
    return order, inspection


async def _email_inspected(session: AsyncSession, order: Order, inspection: Inspection) -> None:
    # No status is entered (the order stays in inspecting until paid), so no follow-up sends
    # this one: the verdict defers it itself, by name, in its own transaction.
    context: dict[str, Any] = to_jsonable_python(
        {
            "order_id": order.id,
            "order_number": order.order_number,
            "status": order.status,
            "from_status": order.status,
            "device": f"{order.device_brand} {order.device_model}",
            "quoted_price_usd": order.quoted_price_usd,
            "final_price_usd": order.final_price_usd,
            "offer_expires_at": None,
            "tracking_number": order.tracking_number,
            "shipping_carrier": order.shipping_carrier,
            "attachments": [],
            "grade": inspection.grade,
            "notes": inspection.notes,
        }
    )
    await queue.defer(
        session,
        follow_ups.NOTIFY_USER,
        user_id=str(order.user_id),
        template=INSPECTED_EMAIL,
        context=context,
    )
