"""The queue, one order's page, and the moves made from it. Every move calls the service
function the JSON operator API calls, so it is the same state change, recorded in the order's
history as `operator:<id>`; then the browser is sent back to the order, which says what was
done (?done=)."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from refit import resources
from refit.backoffice import claims
from refit.dashboard import actions, forms, live, photos
from refit.dashboard.forms import Kept
from refit.dashboard.order_view import render_order
from refit.dashboard.queue_reads import Cursor, counts, queue
from refit.dashboard.render import STATUS_LABELS, page
from refit.dashboard.session import AdminDep, OperatorDep
from refit.dashboard.work import WORK_LABELS, Work
from refit.errors import Conflict, Unprocessable
from refit.inspection import service
from refit.ledger.treasury import treasury_pubkey
from refit.models import OrderStatus
from refit.models.payout import PayoutStatus
from refit.orders.service import cancel_before_transit, get_order
from refit.payouts import service as payouts
from refit.shipping.label_download import label_response
from refit.transactions import SessionDep

router = APIRouter()


def to_order(order_id: uuid.UUID, done: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/orders/{order_id}?done={done}", status_code=303)


def _status(name: str | None) -> OrderStatus | None:
    if not name:
        return None
    try:
        return OrderStatus(name)
    except ValueError:
        raise Unprocessable("No such status", code="invalid_status") from None


@router.get("/", response_class=HTMLResponse)
async def queue_page(
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    work: Work = Work.OPEN,
    status_name: Annotated[str | None, Query(alias="status", max_length=40)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[str | None, Query(max_length=120)] = None,
) -> Response:
    max_usd = resources.current().settings.payout_max_usd
    # The search form sends status= for "any status".
    status = _status(status_name)
    cursor = Cursor.decode(after) if after else None
    found = await queue(
        session,
        work=work,
        status=status,
        q=q,
        after=cursor,
        operator_id=operator.id,
        max_usd=max_usd,
    )
    by_work, by_status = await counts(session, operator_id=operator.id, max_usd=max_usd)
    stamp = live.digest(repr((found, by_work, by_status)))
    if (same := live.unchanged(request, stamp)) is not None:
        return same
    keep = {k: v for k, v in (("work", work.value), ("status", status), ("q", q)) if v}
    if status is not None or (q or "").strip():
        keep.pop("work", None)
    next_url = (
        f"/admin/?{urlencode({**keep, 'after': found.next_cursor})}" if found.next_cursor else None
    )
    response = page(
        request,
        "queue.html",
        rows=found.rows,
        next_url=next_url,
        first_url=f"/admin/?{urlencode(keep)}" if cursor else None,
        by_work=by_work,
        by_status=by_status,
        work=work,
        WORK_LABELS=WORK_LABELS,
        status=status,
        q=q or "",
        live_stamp=stamp,
    )
    response.headers[live.HEADER] = stamp
    return response


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    done: str | None = None,
) -> Response:
    glance = await live.order_glance(session, order_id)
    if glance is not None and (same := live.unchanged(request, glance.stamp)) is not None:
        return same
    return await render_order(
        request,
        session,
        operator,
        order_id,
        glance=glance,
        done=actions.DONE.get(done or "") or CLAIM_DONE.get(done or ""),
    )


# What a claim's redirect says (?done=): fixed texts, never echoed input.
CLAIM_DONE = {
    "claimed": "This order is yours: it shows under Mine.",
    "taken_over": "Taken over: this order is yours now.",
    "unclaimed": "Let go: this order is nobody's now.",
    "claim_refused": "Someone else is working on this order: take it over if you mean to.",
}


@router.post("/orders/{order_id}/claim")
async def claim(
    order_id: uuid.UUID,
    session: SessionDep,
    operator: OperatorDep,
    take_over: Annotated[bool, Form()] = False,
) -> Response:
    try:
        order = await claims.claim(session, order_id, operator, take_over=take_over)
    except Conflict as refused:
        if refused.code != "order_claimed":
            raise
        # Nothing was written: the order page says who has it and offers the take-over.
        return to_order(order_id, "claim_refused")
    return to_order(order.id, "taken_over" if take_over else "claimed")


@router.post("/orders/{order_id}/unclaim")
async def unclaim(order_id: uuid.UUID, session: SessionDep, operator: OperatorDep) -> Response:
    await claims.unclaim(session, order_id, operator)
    return to_order(order_id, "unclaimed")


@router.get("/orders/{order_id}/label")
async def order_label(order_id: uuid.UUID, session: SessionDep, operator: OperatorDep) -> Response:
    return await label_response(resources.current(), await get_order(session, order_id))


@router.post("/orders/{order_id}/receive")
async def receive(order_id: uuid.UUID, session: SessionDep, operator: OperatorDep) -> Response:
    await service.receive(session, order_id, operator)
    return to_order(order_id, "received")


@router.post("/orders/{order_id}/start-inspection")
async def start_inspection(
    order_id: uuid.UUID, session: SessionDep, operator: OperatorDep
) -> Response:
    await service.start_inspection(session, order_id, operator)
    return to_order(order_id, "inspection_started")


@router.post("/orders/{order_id}/photos")
async def add_photos(
    order_id: uuid.UUID, request: Request, session: SessionDep, operator: OperatorDep
) -> Response:
    if not await photos.add(session, order_id, operator, request):
        raise Unprocessable("Choose or take at least one photo", code="invalid_photo_count")
    return to_order(order_id, "photos")


@router.post("/orders/{order_id}/pay")
async def pay(order_id: uuid.UUID, session: SessionDep, operator: AdminDep) -> Response:
    settings = resources.current().settings
    # The public key only, as the API: the keypair is the worker's alone.
    treasury = treasury_pubkey(settings)
    payout = await payouts.request_payout(
        session,
        order_id,
        treasury=treasury,
        requested_by=operator.actor,
        max_usd=settings.payout_max_usd,
    )
    waiting = payout.status is PayoutStatus.AWAITING_APPROVAL
    return to_order(order_id, "approval_requested" if waiting else "pay_requested")


@router.post("/payouts/{payout_id}/approve")
async def approve(payout_id: uuid.UUID, session: SessionDep, operator: AdminDep) -> Response:
    payout = await payouts.approve_payout(session, payout_id, approver=operator)
    return to_order(payout.order_id, "approved")


# The cancel form's reason: as long as the history's notes take.
REASON_MAX = 500


@router.post("/orders/{order_id}/cancel")
async def cancel(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    # Longer than allowed, so that the form (not a bare 422) says what is wrong.
    reason: Annotated[str, Form(max_length=4 * REASON_MAX)] = "",
) -> Response:
    kept = Kept(("reason",), values={"reason": reason})
    if len(reason.strip()) > REASON_MAX:
        kept.errors["reason"] = (
            f"At most {REASON_MAX} characters; this is {len(reason.strip())}. Shorten it."
        )
    else:
        # The API's cancel itself; what follows (the label's refund) is the move's follow-up.
        done, refused = await forms.attempt(
            session,
            lambda: cancel_before_transit(
                session,
                order_id,
                actor=operator.actor,
                reason=reason.strip() or "cancelled by an operator",
            ),
        )
        if done is not None:
            return to_order(order_id, "cancelled")
        assert refused is not None
        if refused.status != 409:
            raise refused
        now = (await get_order(session, order_id)).status
        kept.status = 409
        kept.errors["reason"] = (
            f"Not cancelled: the order is {STATUS_LABELS[now].lower()} now, and only an order "
            "whose device is not on its way yet can be cancelled here. Nothing was changed; "
            "your reason is kept here."
        )
    return await render_order(request, session, operator, order_id, kept={"cancel": kept})
