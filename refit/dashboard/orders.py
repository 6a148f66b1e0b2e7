"""The queue, one order's page, and the moves made from it. Every move calls the service
function the JSON operator API calls, so it is the same state change, recorded in the order's
history as `operator:<id>`; then the browser is sent back to the order, which says what was
done (?done=)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from refit import resources
from refit.backoffice.reads import order_story
from refit.dashboard import actions, payout_actions, photos, returns
from refit.dashboard.queue_reads import queue, status_counts
from refit.dashboard.render import page
from refit.dashboard.session import AdminDep, OperatorDep
from refit.errors import Unprocessable
from refit.inspection import service
from refit.ledger.treasury import treasury_pubkey
from refit.models import Operator, OrderStatus
from refit.models.payout import PayoutStatus
from refit.orders.service import cancel_before_transit, get_order
from refit.payouts import service as payouts
from refit.shipping.label_download import label_response
from refit.transactions import SessionDep

router = APIRouter()


def to_order(order_id: uuid.UUID, done: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/orders/{order_id}?done={done}", status_code=303)


@router.get("/", response_class=HTMLResponse)
async def queue_page(
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    status: OrderStatus | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    rows = await queue(session, status=status, q=q)
    counts = await status_counts(session)
    return page(request, "queue.html", rows=rows, counts=counts, status=status, q=q or "")


async def _actor_names(session: SessionDep, actors: list[str]) -> dict[str, str]:
    ids = []
    for actor in actors:
        kind, _, who = actor.partition(":")
        if kind == "operator":
            try:
                ids.append(uuid.UUID(who))
            except ValueError:
                continue
    if not ids:
        return {}
    rows = await session.execute(select(Operator.id, Operator.username).where(Operator.id.in_(ids)))
    return {f"operator:{op_id}": name for op_id, name in rows.all()}


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    done: str | None = None,
) -> HTMLResponse:
    story = await order_story(session, resources.current().settings, order_id)
    actors = [h.actor for h in story.history]
    if story.inspection is not None:
        actors.append(f"operator:{story.inspection.operator_id}")
    payout_state, payout_moves = None, set()
    if story.payout is not None:
        actors += [story.payout.requested_by, story.payout.approved_by or ""]
        max_usd = resources.current().settings.payout_max_usd
        payout_state = payout_actions.state_in_words(story.payout, max_usd)
        payout_moves = payout_actions.offered(story.payout, operator, max_usd)
    return page(
        request,
        "order.html",
        story=story,
        actions=actions.allowed(story, operator),
        done=actions.DONE.get(done or ""),
        names=await _actor_names(session, actors),
        photo_statuses=sorted(photos.EVIDENCE_STATUSES),
        payout_state=payout_state,
        payout_moves=payout_moves,
        returns=await returns.panel(session, request, story, operator),
    )


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


@router.post("/orders/{order_id}/cancel")
async def cancel(
    order_id: uuid.UUID,
    session: SessionDep,
    operator: AdminDep,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    # The API's cancel itself; what follows (the label's refund) is the move's follow-up.
    await cancel_before_transit(
        session, order_id, actor=operator.actor, reason=reason.strip() or "cancelled by an operator"
    )
    return to_order(order_id, "cancelled")
