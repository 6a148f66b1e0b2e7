"""The ways out of a stopped payout from the dashboard: retry, cancel, release and resolve, each
the service function the API calls (refit/payouts/recovery.py), so the same move, four-eyes
and audit row (`operator:<id>` in payout_events); then back to the order, which says what was
done. Also what the payout panel says of the payout's state, and who must act."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse, Response

from refit import resources
from refit.dashboard.session import AdminDep, DashboardOperator
from refit.models.payout import HoldReason, Payout, PayoutStatus
from refit.payouts import recovery
from refit.payouts.schemas import PayoutRead, PayoutResolve
from refit.transactions import SessionDep

router = APIRouter()

P = PayoutStatus
# The order page reads a PayoutRead, the payouts page the rows themselves.
AnyPayout = Payout | PayoutRead

_HOLDS = {
    HoldReason.SANCTIONS: "recipient on the sanctions list",
    HoldReason.SANCTIONS_LIST_STALE: "the sanctions list is stale",
    HoldReason.ALREADY_ON_CHAIN: "a transfer for this order is already on chain",
}


def _who(payout: AnyPayout, moves: list[str], max_usd: Decimal) -> str:
    second = any(recovery.needs_second_admin(payout, m, max_usd=max_usd) for m in moves)
    return "a second admin must" if second else "an admin must"


def state_in_words(payout: AnyPayout, max_usd: Decimal) -> str:
    """The payout's state for the top of its panel, naming who must act next."""
    status = payout.status
    if status is P.AWAITING_APPROVAL:
        return "Waiting for a second admin to approve it (over the per-payout cap)."
    if status is P.PENDING:
        waiting = f" It waits: {payout.error}" if payout.error else ""
        return f"Pending: the worker signs and sends it.{waiting}"
    if status is P.SIGNED:
        return "Signed: the worker sends it and waits for the chain."
    if status is P.SENT:
        return "Sent: waiting for the chain to finalize it."
    if status is P.FINALIZED:
        return "Paid: the transfer is finalized on chain."
    if status is P.CANCELLED:
        return "Cancelled: pay again, revise the offer, or send the device home."
    if status is P.FAILED:
        return (
            "Failed: the transfer landed with an error and moved nothing; "
            f"{_who(payout, ['retry'], max_usd)} retry or cancel."
        )
    assert payout.hold_reason is not None
    why = _HOLDS[payout.hold_reason]
    if payout.hold_reason is HoldReason.ALREADY_ON_CHAIN:
        pair = (
            " (cancelling: a second admin)"
            if recovery.needs_second_admin(payout, "cancel", max_usd=max_usd)
            else ""
        )
        return (
            f"Held: {why} — an admin must resolve it with that transfer's signature, or "
            f"cancel it{pair}."
        )
    return f"Held: {why} — {_who(payout, ['release'], max_usd)} release or cancel."


def offered(payout: AnyPayout, operator: DashboardOperator, max_usd: Decimal) -> set[str]:
    """The ways out offered to `operator`: admins only, and not those four-eyes keeps from the
    admin who asked for the payout (the service refuses them too)."""
    if not operator.is_admin:
        return set()
    moves: set[str] = set()
    if payout.status is P.FAILED:
        moves = {"retry", "cancel"}
    elif payout.status is P.HELD:
        moves = {"cancel"}
        if payout.hold_reason in recovery.SANCTIONS_HOLDS:
            moves.add("release")
        if payout.hold_reason is HoldReason.ALREADY_ON_CHAIN:
            moves.add("resolve")
    if payout.requested_by == operator.actor:
        moves = {m for m in moves if not recovery.needs_second_admin(payout, m, max_usd=max_usd)}
    return moves


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


@router.post("/payouts/{payout_id}/resolve")
async def resolve(
    payout_id: uuid.UUID,
    form: Annotated[PayoutResolve, Form()],
    session: SessionDep,
    operator: AdminDep,
) -> Response:
    # As the API: the chain and the price feed are read before the resolve's own statements.
    found, rate = await recovery.read_for_resolve(resources.current(), form.signature)
    payout = await recovery.resolve(
        session, payout_id, operator, found, signature=form.signature, rate=rate
    )
    return _back_to_order(payout, "payout_resolved")
