"""The ways out of a payout that stopped (issue 23), one door each, no SQL by hand: `retry` a
failed one, `cancel` a failed or held one, `resolve` an "already on chain" hold with the
transfer found, `release` a sanctions hold. Each move is written by states.write() with the
operator as actor (payout_events); the API, the dashboard and the CLI all call these.

Four-eyes (refit/admin/four_eyes.py) guards retry, cancel and release above the per-payout
cap, and a sanctions release whatever the amount."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from refit.admin.deps import OperatorPrincipal
from refit.admin.four_eyes import require_second_admin
from refit.errors import Conflict, Unprocessable
from refit.models.payout import HoldReason, Payout, PayoutStatus
from refit.money import LAMPORTS_PER_SOL, SOL_STEP, recorded_rate
from refit.payouts import chain, service, states
from refit.payouts.schemas import PayoutRead
from refit.pricing.service import current_rate
from refit.pricing.sources import Rate
from refit.resources import Resources
from refit.sanctions import service as sanctions

if TYPE_CHECKING:
    from refit.resources import Resources

log = structlog.get_logger(__name__)

P = PayoutStatus
SANCTIONS_HOLDS = frozenset({HoldReason.SANCTIONS, HoldReason.SANCTIONS_LIST_STALE})
# Resolving a payout never priced (held at its first signing: the row was lost, the transfer
# is older than it): the transfer's SOL at today's rate must be this close to the USD owed.
# Wide enough for the market's moves since, narrow enough to refuse another order's transfer.
UNPRICED_TOLERANCE = Decimal("0.10")


def needs_second_admin(payout: Payout | PayoutRead, verb: str, *, max_usd: Decimal) -> bool:
    """Whether four-eyes guards `verb` on this payout: retry, cancel and release above the
    per-payout cap, a sanctions release whatever the amount, resolve never. The dashboard asks
    it too, to say who must act and what to offer."""
    if verb == "release" and payout.hold_reason in SANCTIONS_HOLDS:
        return True
    if verb == "resolve":
        return False  # the chain's transfer decides, checked against the payout
    return payout.amount_usd > max_usd


async def _second_admin(
    session: AsyncSession, payout: Payout, operator: OperatorPrincipal, verb: str
) -> None:
    await require_second_admin(
        session,
        approver=operator,
        requested_by=payout.requested_by,
        requested_at=payout.requested_at,
        action=f"payout.{verb}",
        subject=f"payout:{payout.id}",
    )


async def retry(
    session: AsyncSession, payout_id: uuid.UUID, operator: OperatorPrincipal, *, max_usd: Decimal
) -> Payout:
    """failed → pending, its job deferred: a new transfer, signed only once the chain shows the
    failed one moved nothing (the job's checks before any signing). The failed transaction is
    forgotten by the row (it is in the payout's events) so the job signs anew; the amount in
    SOL stays the one first priced."""
    payout = await service.get_payout(session, payout_id)
    _expect(payout, {P.FAILED}, "retried")
    if needs_second_admin(payout, "retry", max_usd=max_usd):
        await _second_admin(session, payout, operator, "retry")
    failed = payout.signature
    payout.signed_tx = None
    payout.signature = None
    payout.last_valid_block_height = None
    await states.write(
        session,
        payout,
        P.PENDING,
        actor=operator.actor,
        reason="retried",
        error=None,
        evidence={"failed_signature": failed},
        expected_from=frozenset({P.FAILED}),
    )
    await service.defer_send(session, payout.order_id)
    return payout


async def cancel(
    session: AsyncSession, payout_id: uuid.UUID, operator: OperatorPrincipal, *, max_usd: Decimal
) -> Payout:
    """failed or held → cancelled. The order never moved (a payout moves it only once
    finalized): it waits in inspecting or offer_pending where an admin decides again: pay
    again (re-opens this row, service.reopen), or send the device home."""
    payout = await service.get_payout(session, payout_id)
    _expect(payout, {P.FAILED, P.HELD}, "cancelled")
    if needs_second_admin(payout, "cancel", max_usd=max_usd):
        await _second_admin(session, payout, operator, "cancel")
    await states.write(
        session,
        payout,
        P.CANCELLED,
        actor=operator.actor,
        reason="cancelled",
        expected_from=frozenset({P.FAILED, P.HELD}),
    )
    return payout


async def release(
    session: AsyncSession, payout_id: uuid.UUID, operator: OperatorPrincipal, *, max_usd: Decimal
) -> Payout:
    """held (sanctions, or the list stale) → pending, its job deferred, with a second admin
    whatever the amount. The release of a hit holds against the list it was decided on (its
    sha256, in the event): the job signs. A stale list's release is no decision on a hit:
    if the list loaded since names the recipient, the job holds it again."""
    payout = await service.get_payout(session, payout_id)
    _expect(payout, {P.HELD}, "released")
    if payout.hold_reason not in SANCTIONS_HOLDS:
        raise Conflict(
            f"This payout is held for {payout.hold_reason}; only a sanctions hold is released",
            code="payout_not_releasable",
        )
    if needs_second_admin(payout, "release", max_usd=max_usd):
        await _second_admin(session, payout, operator, "release")
    listing = await sanctions.current_list(session)
    await states.write(
        session,
        payout,
        P.PENDING,
        actor=operator.actor,
        reason=f"released from {payout.hold_reason}",
        error=None,
        evidence={
            "released_hold": str(payout.hold_reason),
            "list_sha256": listing.source_sha256 if listing else None,
        },
        expected_from=frozenset({P.HELD}),
    )
    await service.defer_send(session, payout.order_id)
    return payout


async def read_for_resolve(
    res: Resources, signature: str
) -> tuple[chain.FoundTransfer | None, Rate]:
    """What a resolve checks, read before its transaction so nothing is locked while the
    chain and the price feed answer: the transfer `signature` made (`find_transfer`), and
    today's rate (for a payout never priced). The API, the dashboard and the CLI read it
    here, then call `resolve`."""
    from solana.rpc.async_api import AsyncClient

    async with AsyncClient(res.settings.solana_rpc_endpoint) as rpc:
        found = await chain.find_transfer(rpc, signature)
    return found, await current_rate(res)


async def resolve(
    session: AsyncSession,
    payout_id: uuid.UUID,
    operator: OperatorPrincipal,
    found: chain.FoundTransfer | None,
    *,
    signature: str,
    rate: Rate,
) -> Payout:
    """held (already_on_chain) → finalized, recording the transfer `found` (read before this
    transaction: `find_transfer`) as the payout, and the order completed as a normal finalize
    does. 422 unless it is a finalized transfer from the payout's treasury to its recipient,
    carrying its reference, of its amount (the lamports signed, or when never priced the USD
    owed at `rate` within UNPRICED_TOLERANCE)."""
    payout = await service.get_payout(session, payout_id)
    _expect(payout, {P.HELD}, "resolved")
    if payout.hold_reason is not HoldReason.ALREADY_ON_CHAIN:
        raise Conflict(
            f"This payout is held for {payout.hold_reason}; only an already-on-chain hold is "
            "resolved with a transfer",
            code="payout_not_resolvable",
        )
    _check_transfer(payout, found, signature, rate)
    assert found is not None
    usd_per_sol = recorded_rate(rate.usd_per_sol)
    if payout.lamports is None:
        payout.sol_usd_rate = usd_per_sol
        payout.rate_source = rate.source
        payout.rate_at = rate.published_at
    payout.lamports = found.lamports
    payout.amount_sol = (Decimal(found.lamports) / LAMPORTS_PER_SOL).quantize(SOL_STEP)
    payout.signature = found.signature
    await service.finish(
        session,
        payout,
        actor=operator.actor,
        evidence={"resolved": True, "slot": found.slot, "lamports": found.lamports},
    )
    return payout


def _check_transfer(
    payout: Payout, found: chain.FoundTransfer | None, signature: str, rate: Rate
) -> None:
    def refuse(why: str, code: str) -> Unprocessable:
        return Unprocessable(f"Transaction {signature}: {why}", code=code)

    if found is None:
        raise refuse("no finalized, successful system transfer", "transfer_not_found")
    if found.source != payout.treasury or payout.reference not in found.accounts:
        raise refuse("not this payout's transfer (treasury or reference)", "transfer_not_ours")
    if found.recipient != payout.recipient:
        raise refuse(f"pays {found.recipient}, not {payout.recipient}", "transfer_mismatch")
    if payout.lamports is not None:
        if found.lamports != payout.lamports:
            raise refuse(
                f"carries {found.lamports} lamports, the payout {payout.lamports}",
                "transfer_mismatch",
            )
        return
    paid_usd = Decimal(found.lamports) / LAMPORTS_PER_SOL * rate.usd_per_sol
    if abs(paid_usd - payout.amount_usd) > payout.amount_usd * UNPRICED_TOLERANCE:
        raise refuse(
            f"carries ${paid_usd:.2f} at today's rate, the payout ${payout.amount_usd}",
            "transfer_mismatch",
        )


def _expect(payout: Payout, statuses: set[PayoutStatus], verb: str) -> None:
    if payout.status not in statuses:
        raise Conflict(
            f"This payout is {payout.status.value}; only a "
            f"{' or '.join(sorted(s.value for s in statuses))} payout is {verb}",
            code="invalid_payout_transition",
            extra={"current_status": payout.status.value},
        )
