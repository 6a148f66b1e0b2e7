"""The payout state machine: which status may follow which, and `write()`, the one door that
writes a payout's `status`, `error` and `hold_reason`, each write recorded in `payout_events`
(who, why, the chain's evidence). Anything not listed here is a 409 and changes nothing.

awaiting_approval → pending → signed → sent → finalized      (the job; a second admin first
                                  ▲      │                     when over the per-payout cap)
                                  └──────┘ re-sign once the stored transaction expired
signed/sent → failed   the transfer landed with an error   → retry (pending) or cancel
pending/signed/sent → held   screening, or already on chain → release (pending), resolve
                                                              (finalized) or cancel
cancelled → pending / awaiting_approval   the order paid again

Choices, and why:
- `held` is a payout nothing may sign until an operator decides: a transfer with its
  reference is already on chain (resolve, or cancel), or the recipient failed screening
  (release, four-eyes always). Waits that end by themselves (the treasury too low, today's
  cap reached) stay `pending` with their error: the job and the sweep look again.
- `failed` (landed with an error, nothing moved) and `held` leave only through an operator:
  retry (failed → pending), release (held → pending), resolve (held → finalized) or cancel.
- `cancelled` → pending / awaiting_approval: paying the order again re-opens its one row
  (the row is unique per order, and keeps its reference: see service.reopen).
- Same-status writes (an error noted on a pending payout, a re-sign of a signed one) are
  allowed while the payout is not final; they are recorded only when something changed.
"""

from __future__ import annotations

import re
from typing import Any, Final

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from refit.errors import Conflict
from refit.models.payout import HoldReason, Payout, PayoutEvent, PayoutStatus

log = structlog.get_logger(__name__)

P = PayoutStatus

ALLOWED_MOVES: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    P.AWAITING_APPROVAL: frozenset({P.PENDING}),
    P.PENDING: frozenset({P.SIGNED, P.HELD}),
    P.SIGNED: frozenset({P.SENT, P.FINALIZED, P.FAILED, P.HELD}),
    P.SENT: frozenset({P.SIGNED, P.FINALIZED, P.FAILED, P.HELD}),
    P.FAILED: frozenset({P.PENDING, P.CANCELLED}),
    P.HELD: frozenset({P.PENDING, P.FINALIZED, P.CANCELLED}),
    P.CANCELLED: frozenset({P.PENDING, P.AWAITING_APPROVAL}),
    P.FINALIZED: frozenset(),
}

# Nothing is written to these again but through a move out (cancelled: a re-open).
FINAL = frozenset({P.FINALIZED, P.CANCELLED})

_ACTOR = re.compile(r"(operator|system|cli):\S+")
ERROR_MAX_CHARS = 2000


class _Keep:
    """`error` left as it is."""


KEEP: Final = _Keep()


def allowed(from_status: PayoutStatus, to_status: PayoutStatus) -> bool:
    if from_status is to_status:
        return from_status not in FINAL
    return to_status in ALLOWED_MOVES[from_status]


async def write(
    session: AsyncSession,
    payout: Payout,
    to_status: PayoutStatus,
    *,
    actor: str,
    reason: str | None = None,
    error: str | _Keep | None = KEEP,
    hold: HoldReason | None = None,
    evidence: dict[str, Any] | None = None,
    expected_from: frozenset[PayoutStatus] | None = None,
) -> None:
    """Move `payout` (locked by the caller) to `to_status`, setting its `error` (KEEP: as it
    is) and, for `held`, its `hold_reason`; one `payout_events` row records the write. 409
    `invalid_payout_transition` when the table does not allow it: nothing is changed then.

    `actor` is "operator:<id>", "system:<job>" or "cli:<login>"; `evidence` what the chain
    showed (a signature, the transfers found); `expected_from`: only from one of these (a way
    out names the one status it leaves)."""
    if not _ACTOR.fullmatch(actor):
        raise ValueError(f"actor must be operator:/system:/cli:<who>, got {actor!r}")
    from_status = payout.status
    if not allowed(from_status, to_status) or (
        expected_from is not None and from_status not in expected_from
    ):
        raise Conflict(
            f"This payout is {from_status.value}; it cannot move to {to_status.value}",
            code="invalid_payout_transition",
            extra={"current_status": from_status.value, "requested_status": to_status.value},
        )
    if (to_status is P.HELD) != (hold is not None):
        raise ValueError("a payout is held with a reason, and only held has one")
    new_error = payout.error if isinstance(error, _Keep) else error
    if new_error is not None:
        new_error = new_error[:ERROR_MAX_CHARS]
    unchanged = (
        from_status is to_status
        and new_error == payout.error
        and hold == payout.hold_reason
        and not evidence
    )
    if unchanged:
        return
    payout.status = to_status
    payout.error = new_error
    payout.hold_reason = hold
    session.add(
        PayoutEvent(
            payout_id=payout.id,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            reason=reason or (hold.value if hold is not None else new_error),
            evidence=evidence or {},
        )
    )
    await session.flush()
    log.info(
        "payouts.moved",
        payout_id=str(payout.id),
        order_id=str(payout.order_id),
        from_status=from_status.value,
        to_status=to_status.value,
        actor=actor,
        reason=reason,
    )
