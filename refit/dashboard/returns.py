"""The way home and the labels, from the order page: send a device home (the insured label
home), print that label, mark the parcel handed to the carrier, retry a label that failed and
refund a cancelled order's label. Each move is the service function the JSON API calls
(shipping/label_moves.py, inspection's send_home), so the same state change and the same
record naming `operator:<id>`.

A refusal (the order's state, nothing to refund, the carrier not answering) comes back to the
order page as a message by these buttons (?refused=<code>, a fixed text per code), and the
move's writes are rolled back with it: nothing changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Text, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import resources
from refit.backoffice.schemas import AdminOrderDetail
from refit.carriers.interface import CarrierError
from refit.carriers.picker import open_carrier
from refit.dashboard import actions, forms
from refit.dashboard.session import AdminDep, DashboardOperator, OperatorDep
from refit.errors import ProblemError
from refit.inspection.service import send_home
from refit.models import Operator, OperatorAudit
from refit.models.shipping import ReturnShipment
from refit.orders.service import get_order
from refit.shipping import label_moves
from refit.shipping.label_download import return_label_response
from refit.transactions import SessionDep

log = structlog.get_logger(__name__)

router = APIRouter()

# What the order page says of a refusal, by its code: fixed texts, never echoed input.
REFUSED = {
    "invalid_order_state": "The order is no longer in a state that allows this; nothing was "
    "changed. Its status is at the top of the page.",
    "invalid_transition": "The order is no longer in a state that allows this; nothing was "
    "changed.",
    "label_not_refundable": "There is no label left to refund: none was bought, or the carrier "
    "already refunded it (or refused to). Nothing was changed.",
    "carrier_unavailable": "The carrier is not answering right now; nothing was changed. "
    "Try again in a minute.",
    "carrier_rejected": "The carrier refused the request; nothing was changed.",
    "return_label_bought": "The label home is bought already; print it below.",
    "return_label_not_bought": "The label home is not bought yet; wait for it (or buy it "
    "again if it failed) before handing the parcel over.",
    "return_handed_over": "This parcel was marked as handed to the carrier already.",
    "payout_requested": "The order is being paid; it cannot go home.",
    "offer_accepted": "The seller accepted the offer; it cannot be declined for them.",
    "label_not_ready": "There is no label home to print yet.",
    "label_not_found": "The label file is missing from storage; buy the label home again or "
    "contact engineering.",
}
REFUSED_OTHERWISE = "That was refused; nothing was changed."

# The audit trail's actions, as the order page names them.
TRAIL_NAMES = {
    "order.retry_label": "Label purchase retried",
    "order.refund_label": "Label refund asked for",
    "order.return_handed_over": "Parcel home handed to the carrier",
}


def _back(order_id: uuid.UUID, query: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/orders/{order_id}?{query}#returns", status_code=303)


async def _attempt(
    session: AsyncSession, order_id: uuid.UUID, done: str, move: Callable[[], Awaitable[Any]]
) -> RedirectResponse:
    """`move` in a savepoint (forms.attempt): refused, its writes are undone and the page
    says why."""
    try:
        _, refused = await forms.attempt(session, move)
    except CarrierError as exc:
        # Raised out of the savepoint, which rolled back as it went.
        code = "carrier_unavailable" if exc.retryable else "carrier_rejected"
        log.warning("dashboard.carrier_refused", order_id=str(order_id), move=done, error=str(exc))
        return _back(order_id, f"refused={code}")
    if refused is not None:
        log.info("dashboard.move_refused", order_id=str(order_id), move=done, code=refused.code)
        return _back(order_id, f"refused={refused.code}")
    return _back(order_id, f"done={done}")


@router.post("/orders/{order_id}/retry-label")
async def retry_label(order_id: uuid.UUID, session: SessionDep, operator: AdminDep) -> Response:
    return await _attempt(
        session,
        order_id,
        "label_retried",
        lambda: label_moves.retry_label(session, order_id, operator),
    )


@router.post("/orders/{order_id}/refund-label")
async def refund_label(order_id: uuid.UUID, session: SessionDep, operator: AdminDep) -> Response:
    async def check_then_refund() -> None:
        # The carrier is asked first, before the order's lock is taken.
        async with open_carrier(resources.current().settings, seller_waiting=True) as carrier:
            await label_moves.refund_check(session, carrier, order_id)
        await label_moves.refund_label(session, order_id, operator)

    return await _attempt(session, order_id, "refund_queued", check_then_refund)


@router.post("/orders/{order_id}/send-home")
async def send_device_home(
    order_id: uuid.UUID, session: SessionDep, operator: OperatorDep
) -> Response:
    return await _attempt(
        session, order_id, "sent_home", lambda: send_home(session, order_id, operator)
    )


@router.post("/orders/{order_id}/return-handed-over")
async def hand_over(order_id: uuid.UUID, session: SessionDep, operator: OperatorDep) -> Response:
    return await _attempt(
        session,
        order_id,
        "handed_over",
        lambda: label_moves.hand_over_return(session, order_id, operator),
    )


@router.get("/orders/{order_id}/return-label")
async def print_return_label(
    order_id: uuid.UUID, session: SessionDep, operator: OperatorDep
) -> Response:
    order = await get_order(session, order_id)
    try:
        return await return_label_response(
            resources.current(), order, await _home(session, order_id)
        )
    except ProblemError as exc:
        return _back(order_id, f"refused={exc.code}")


async def _home(session: AsyncSession, order_id: uuid.UUID) -> ReturnShipment | None:
    found: ReturnShipment | None = await session.scalar(
        select(ReturnShipment).where(ReturnShipment.order_id == order_id)
    )
    return found


@dataclass(frozen=True)
class TrailEntry:
    at: Any
    what: str
    who: str


@dataclass(frozen=True)
class Panel:
    """What the order page's "way home and labels" section shows."""

    home: ReturnShipment | None
    moves: set[str]
    refused: str | None
    trail: list[TrailEntry] = field(default_factory=list)
    handed_over_by: str | None = None

    @property
    def shown(self) -> bool:
        return bool(self.home or self.moves or self.refused or self.trail)


async def panel(
    session: AsyncSession, request: Request, story: AdminOrderDetail, operator: DashboardOperator
) -> Panel:
    order_id = story.order.id
    home = await _home(session, order_id)
    rows = await session.execute(
        select(OperatorAudit.at, OperatorAudit.action, OperatorAudit.actor, Operator.username)
        .outerjoin(
            Operator, OperatorAudit.actor == func.concat("operator:", cast(Operator.id, Text))
        )
        .where(OperatorAudit.subject == label_moves.subject(order_id))
        .order_by(OperatorAudit.at)
    )
    names: dict[str, str] = {}
    trail = []
    for at, action, actor, username in rows.all():
        if username:
            names[actor] = username
        trail.append(TrailEntry(at, TRAIL_NAMES.get(action, action), username or actor))
    refused = request.query_params.get("refused")
    by = home.handed_over_by if home is not None else None
    return Panel(
        home=home,
        moves=actions.label_moves(story, home, operator),
        refused=(REFUSED.get(refused, REFUSED_OTHERWISE) if refused else None),
        trail=trail,
        handed_over_by=names.get(by, by) if by else None,
    )
