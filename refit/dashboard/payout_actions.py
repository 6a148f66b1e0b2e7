"""The ways out of a stopped payout from the dashboard: retry, cancel, release and resolve, each
the service function the API calls (refit/payouts/recovery.py), so the same move, four-eyes
and audit row (`operator:<id>` in payout_events); then back to the order, which says what was
done. What the panel says of the payout is payout_panel.py's.

A refused resolve (a malformed signature, a transfer not found, not this payout's, or not of
its amount; the payout no longer held) comes back on the order page with the signature kept
in its field and the reason by it (or by the buttons when it is not the signature's)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import resources
from refit.dashboard import forms
from refit.dashboard.forms import Kept
from refit.dashboard.order_view import render_order
from refit.dashboard.session import AdminDep
from refit.errors import NotFound
from refit.models.payout import Payout
from refit.payouts import recovery
from refit.payouts.schemas import PayoutResolve
from refit.transactions import SessionDep

router = APIRouter()

# The resolve's refusals about what was typed (recovery._check_transfer); others (the
# payout's state) are said by the buttons.
SIGNATURE_CODES = {
    code: "signature" for code in ("transfer_not_found", "transfer_not_ours", "transfer_mismatch")
}
NOT_A_SIGNATURE = (
    "Not a transaction signature: 64 to 88 characters of base 58 (letters and digits, "
    "without 0, O, I or l), as the explorer shows it."
)
MOVED_ON = (
    "Not resolved: this payout is no longer held for a transfer already on chain (its state "
    "is at the top of the page). Nothing was changed."
)


def _max_usd() -> Decimal:
    return resources.current().settings.payout_max_usd


def _back_to_order(payout: Payout, done: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/orders/{payout.order_id}?done={done}", status_code=303)


@router.post("/payouts/{payout_id}/retry")
async def retry(payout_id: uuid.UUID, session: SessionDep, operator: AdminDep) -> Response:
    payout = await recovery.retry(session, payout_id, operator, max_usd=_max_usd())
    return _back_to_order(payout, "payout_retried")


@router.post("/payouts/{payout_id}/cancel")
async def cancel(payout_id: uuid.UUID, session: SessionDep, operator: AdminDep) -> Response:
    payout = await recovery.cancel(session, payout_id, operator, max_usd=_max_usd())
    return _back_to_order(payout, "payout_cancelled")


@router.post("/payouts/{payout_id}/release")
async def release(payout_id: uuid.UUID, session: SessionDep, operator: AdminDep) -> Response:
    payout = await recovery.release(session, payout_id, operator, max_usd=_max_usd())
    return _back_to_order(payout, "payout_released")


async def _order_of(session: AsyncSession, payout_id: uuid.UUID) -> uuid.UUID:
    order_id = await session.scalar(select(Payout.order_id).where(Payout.id == payout_id))
    if order_id is None:
        raise NotFound("No such payout", code="payout_not_found")
    return order_id


@router.post("/payouts/{payout_id}/resolve")
async def resolve(
    payout_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    # Longer than a signature, so that the form (not a bare 422) says what is wrong.
    signature: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    kept = Kept(("signature",), values={"signature": signature.strip()})
    try:
        form = PayoutResolve(signature=signature.strip())
    except ValidationError:
        kept.errors["signature"] = NOT_A_SIGNATURE
    else:
        # As the API: the chain and the price feed are read before the resolve's own statements.
        found, rate = await recovery.read_for_resolve(resources.current(), form.signature)
        payout, refused = await forms.attempt(
            session,
            lambda: recovery.resolve(
                session, payout_id, operator, found, signature=form.signature, rate=rate
            ),
        )
        if payout is not None:
            return _back_to_order(payout, "payout_resolved")
        assert refused is not None
        if refused.status not in (403, 409, 422):
            raise refused
        kept.refuse(refused, SIGNATURE_CODES)
        if refused.status == 409:
            # The payout moved on (resolved, cancelled): its state shows in the panel.
            kept.errors["form"] = MOVED_ON
    order_id = await _order_of(session, payout_id)
    return await render_order(request, session, operator, order_id, kept={"resolve": kept})
