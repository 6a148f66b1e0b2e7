"""What the payout panel of the order page (and the payouts page) says of a payout: its state
in words, naming who must act, and the ways out offered to this operator (the buttons of
payout_actions.py; the recovery service refuses the rest)."""

from __future__ import annotations

from decimal import Decimal

from refit.dashboard.session import DashboardOperator
from refit.models.payout import HoldReason, Payout, PayoutStatus
from refit.payouts import recovery
from refit.payouts.schemas import PayoutRead

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
