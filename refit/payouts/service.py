"""Payouts' rows: asked for once per order, signed and stored before any broadcast,
finished with the order in one transaction. The chain calls live in `chain.py` and run
between these short transactions (`tasks.py`)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Protocol

import structlog
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import func, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from refit import metrics, queue
from refit.admin.deps import OperatorPrincipal
from refit.admin.four_eyes import require_second_admin
from refit.errors import Conflict, NotFound
from refit.models import Order, OrderStatus, User
from refit.models.payout import Payout, PayoutStatus
from refit.money import recorded_rate, sol_at_least, sol_to_lamports, usd_to_sol
from refit.orders import prices
from refit.orders.service import get_order, transition
from refit.payouts import states
from refit.payouts.chain import Blockhash, order_reference, sign_transfer
from refit.payouts.receipt import receipt
from refit.pricing.sources import Rate

log = structlog.get_logger(__name__)

SEND_TASK = "payouts.send_payout"
ACTOR = "system:payouts"
DAILY_CAP_REACHED = "daily cap reached"
TREASURY_TOO_LOW = metrics.PAYOUT_HELD_TREASURY_LOW
# A transfer carrying the order's reference is on chain but not in the table: never sign another.
ALREADY_ON_CHAIN = metrics.PAYOUT_HELD_ALREADY_ON_CHAIN
START_OF_UTC_DAY = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


class PayableOrder(Protocol):
    """What the payout guard reads of an order: the row, or the operators' read of it."""

    @property
    def status(self) -> OrderStatus: ...
    @property
    def final_price_usd(self) -> Decimal | None: ...
    @property
    def offer_accepted_at(self) -> dt.datetime | None: ...


def job_lock(order_id: uuid.UUID) -> str:
    return f"payout:{order_id}"


def waits_for_payout(order: PayableOrder) -> bool:
    """Whether the order waits for its payout: as quoted at inspection, or a revised offer
    the seller accepted. Read from the order alone: the verdict is the only moment a final
    price is set (orders/prices.py), and only an as-quoted verdict leaves the order in
    inspecting (below the quote it moves to offer_pending, unbuyable to returning)."""
    if order.final_price_usd is None or order.final_price_usd <= 0:
        return False
    if order.status is OrderStatus.INSPECTING:
        return True
    return order.status is OrderStatus.OFFER_PENDING and order.offer_accepted_at is not None


def _ready_to_pay(order: Order) -> None:
    """409 unless the order waits for its payout (`waits_for_payout`)."""
    if not waits_for_payout(order):
        raise Conflict(
            f"Order {order.order_number} is {order.status.value} and not waiting for its "
            "payout (an as-quoted inspection, or a revised offer the seller accepted)",
            code="not_ready_to_pay",
        )


async def payout_requested(session: AsyncSession, order_id: uuid.UUID) -> bool:
    """Whether an admin asked to pay the order: its payout row exists and is not cancelled."""
    found = await session.scalar(
        select(Payout.id).where(
            Payout.order_id == order_id, Payout.status != PayoutStatus.CANCELLED
        )
    )
    return found is not None


async def request_payout(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    treasury: Pubkey,
    requested_by: str,
    max_usd: Decimal,
) -> Payout:
    """The order's payout, created (and its job deferred, in this transaction) on the first
    request only: the row is unique per order, so any number of requests make one. Above
    `max_usd` it waits for a second admin's approval instead (`approve_payout`)."""
    order = await get_order(session, order_id, for_update=True)
    # Not locked: the job locks the payout, then the order (finish); locking it here, under
    # the order's lock, could deadlock with it. A cancelled row is written by nothing but a
    # re-open, and re-opens queue on the order's lock.
    existing = await session.scalar(
        select(Payout).where(Payout.order_id == order.id).execution_options(populate_existing=True)
    )
    if existing is not None and existing.status is not PayoutStatus.CANCELLED:
        return existing
    _ready_to_pay(order)
    assert order.final_price_usd is not None
    recipient = await session.scalar(select(User.wallet_address).where(User.id == order.user_id))
    assert recipient is not None
    over_cap = order.final_price_usd > max_usd
    if existing is not None:
        await reopen(
            session,
            existing,
            order.final_price_usd,
            recipient=recipient,
            treasury=str(treasury),
            requested_by=requested_by,
            over_cap=over_cap,
        )
        if not over_cap:
            await defer_send(session, order.id)
        return existing
    inserted = await session.scalar(
        insert(Payout)
        .values(
            order_id=order.id,
            amount_usd=order.final_price_usd,
            recipient=recipient,
            treasury=str(treasury),
            # The order's mark on the chain, derived from its id (chain.order_reference).
            reference=str(order_reference(order.id)),
            requested_by=requested_by,
            status=PayoutStatus.AWAITING_APPROVAL if over_cap else PayoutStatus.PENDING,
        )
        .on_conflict_do_nothing(index_elements=["order_id"])
        .returning(Payout.id)
    )
    if inserted is not None:
        if not over_cap:
            await defer_send(session, order.id)
        log.info(
            "payouts.requested", order_id=str(order.id), by=requested_by, needs_approval=over_cap
        )
    payout = await session.scalar(
        select(Payout).where(Payout.order_id == order.id).execution_options(populate_existing=True)
    )
    assert payout is not None
    return payout


async def reopen(
    session: AsyncSession,
    payout: Payout,
    amount_usd: Decimal,
    *,
    recipient: str,
    treasury: str,
    requested_by: str,
    over_cap: bool,
) -> None:
    """Pay again on a cancelled payout (locked): the same row, asked for, priced and signed
    afresh, with today's price, recipient and treasury.

    It keeps its reference key, on purpose: the lookup by reference before a first signing is
    what proves no earlier attempt landed. A new key would start that lookup from nothing, and
    a transfer of the cancelled attempt that did land (a hold cancelled by mistake, a node that
    had not seen it yet) would go unseen and the seller be paid twice. With the same key the
    re-opened payout's first signing (`lamports` cleared below) finds it and holds instead."""
    payout.amount_usd = amount_usd
    payout.recipient = recipient
    payout.treasury = treasury
    payout.requested_by = requested_by
    # The database's clock, the one operators' created_at is written by.
    payout.requested_at = (await session.execute(select(func.now()))).scalar_one()
    payout.approved_by = None
    payout.lamports = payout.amount_sol = payout.sol_usd_rate = None
    payout.rate_source = payout.rate_at = None
    payout.signed_tx = payout.signature = payout.last_valid_block_height = None
    payout.signed_at = payout.finalized_at = None
    await states.write(
        session,
        payout,
        PayoutStatus.AWAITING_APPROVAL if over_cap else PayoutStatus.PENDING,
        actor=requested_by,
        reason="paid again",
        error=None,
    )


async def defer_send(session: AsyncSession, order_id: uuid.UUID) -> int | None:
    """The payout's job, in the caller's transaction; None when one is waiting already."""
    return await queue.defer(
        session,
        SEND_TASK,
        queueing_lock=job_lock(order_id),
        lock=job_lock(order_id),
        order_id=str(order_id),
    )


async def approve_payout(
    session: AsyncSession, payout_id: uuid.UUID, *, approver: OperatorPrincipal
) -> Payout:
    """A second admin lets a payout over the per-payout cap go: its job is deferred in this
    transaction. Four-eyes decides who may (`require_second_admin`, 403 otherwise); approving
    again is a no-op."""
    payout = await get_payout(session, payout_id)
    if payout.status is not PayoutStatus.AWAITING_APPROVAL:
        if payout.approved_by is not None:
            return payout
        raise Conflict(
            f"This payout is {payout.status.value}, not awaiting approval",
            code="payout_not_awaiting_approval",
        )
    await require_second_admin(
        session,
        approver=approver,
        requested_by=payout.requested_by,
        requested_at=payout.requested_at,
        action="payout.approve",
        subject=f"payout:{payout.id}",
    )
    payout.approved_by = approver.actor
    await states.write(
        session, payout, PayoutStatus.PENDING, actor=approver.actor, reason="approved"
    )
    await defer_send(session, payout.order_id)
    log.info("payouts.approved", order_id=str(payout.order_id), by=approver.actor)
    return payout


async def get_payout(session: AsyncSession, payout_id: uuid.UUID) -> Payout:
    """The payout, locked (404 `payout_not_found`)."""
    payout = await session.scalar(
        select(Payout)
        .where(Payout.id == payout_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if payout is None:
        raise NotFound("No such payout", code="payout_not_found")
    return payout


async def signed_today_usd(session: AsyncSession, *, besides: uuid.UUID | None = None) -> Decimal:
    """What counts against today's (UTC) cap: every payout signed today that did not fail and
    was not cancelled (`besides`: all but that one)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Payout.amount_usd), 0)).where(
            Payout.status.not_in((PayoutStatus.FAILED, PayoutStatus.CANCELLED)),
            Payout.signed_at >= literal_column(START_OF_UTC_DAY),
            *([Payout.id != besides] if besides is not None else []),
        )
    )
    return Decimal(total or 0)


async def daily_cap_allows(session: AsyncSession, payout: Payout, daily_max_usd: Decimal) -> bool:
    """Whether signing this payout keeps today's (UTC) signed total within the cap. Holds
    across workers: an advisory lock held to the end of the caller's transaction serialises
    every first signing, so the sum read here includes every payout signed before."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('payouts.daily_cap'))"))
    signed_today = await signed_today_usd(session, besides=payout.id)
    return signed_today + payout.amount_usd <= daily_max_usd


async def lock_payout(session: AsyncSession, order_id: uuid.UUID) -> Payout | None:
    return await session.scalar(
        select(Payout)
        .where(Payout.order_id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def price(
    amount_usd: Decimal, rate: Rate, *, at_least_lamports: int = 0
) -> tuple[Decimal, Decimal, int]:
    """The recorded rate, the SOL amount and its lamports for a USD amount, raised to
    `at_least_lamports` (on the 0.0001 SOL grid) when the chain needs more to land it."""
    usd_per_sol = recorded_rate(rate.usd_per_sol)
    sol = usd_to_sol(amount_usd, usd_per_sol)
    if sol_to_lamports(sol) < at_least_lamports:
        sol = sol_at_least(at_least_lamports)
    return usd_per_sol, sol, sol_to_lamports(sol)


async def store_signed(
    session: AsyncSession,
    payout: Payout,
    *,
    treasury: Keypair,
    rate: Rate | None,
    blockhash: Blockhash,
    at_least_lamports: int = 0,
) -> None:
    """Price (the first time only), sign and store the transfer, before it is ever sent. A
    re-sign keeps the amount and takes only a fresh blockhash. `at_least_lamports`: what the
    recipient's wallet needs to end rent-exempt (`chain.recipient_shortfall`)."""
    if payout.lamports is None:
        assert rate is not None
        usd_per_sol, sol, lamports = price(
            payout.amount_usd, rate, at_least_lamports=at_least_lamports
        )
        if sol != usd_to_sol(payout.amount_usd, usd_per_sol):
            # A new wallet cannot be opened below the rent-exempt minimum (the chain refuses
            # the transfer); the seller gets that minimum, a fraction of a cent more than owed.
            log.warning(
                "payouts.raised_to_rent_exempt_minimum",
                order_id=str(payout.order_id),
                owed_sol=str(usd_to_sol(payout.amount_usd, usd_per_sol)),
                paid_sol=str(sol),
            )
        payout.sol_usd_rate = usd_per_sol
        payout.rate_source = rate.source
        payout.rate_at = rate.published_at
        payout.amount_sol = sol
        payout.lamports = lamports
    if str(treasury.pubkey()) != payout.treasury:
        raise RuntimeError("the treasury keypair is not the one this payout was asked from")
    tx = sign_transfer(
        treasury,
        Pubkey.from_string(payout.recipient),
        payout.lamports,
        Pubkey.from_string(payout.reference),
        blockhash.blockhash,
    )
    payout.signed_tx = bytes(tx)
    payout.signature = str(tx.signatures[0])
    payout.last_valid_block_height = blockhash.last_valid_block_height
    payout.attempts += 1
    if payout.signed_at is None:
        payout.signed_at = dt.datetime.now(dt.UTC)
    await states.write(
        session,
        payout,
        PayoutStatus.SIGNED,
        actor=ACTOR,
        reason="signed",
        error=None,
        evidence={
            "signature": payout.signature,
            "attempt": payout.attempts,
            "lamports": payout.lamports,
            "last_valid_block_height": payout.last_valid_block_height,
        },
    )
    log.info(
        "payouts.signed",
        order_id=str(payout.order_id),
        signature=payout.signature,
        attempt=payout.attempts,
        lamports=payout.lamports,
        last_valid_block_height=payout.last_valid_block_height,
    )


async def finish(
    session: AsyncSession,
    payout: Payout,
    *,
    actor: str = ACTOR,
    evidence: dict[str, object] | None = None,
) -> None:
    """The transfer is finalized: the payout, the order's payment and its move to
    completed, in one transaction (the payout row locked by the caller)."""
    assert payout.signature is not None and payout.amount_sol is not None
    order = await get_order(session, payout.order_id, for_update=True)
    await prices.record_payment(session, order, payout.amount_sol, payout.signature)
    await transition(
        session,
        order.id,
        OrderStatus.COMPLETED,
        actor=actor,
        notes="paid on chain",
        # The chain's evidence, and the seller's receipt in the completed email.
        metadata=receipt(payout),
        expected_from={OrderStatus.INSPECTING, OrderStatus.OFFER_PENDING},
    )
    payout.finalized_at = dt.datetime.now(dt.UTC)
    await states.write(
        session,
        payout,
        PayoutStatus.FINALIZED,
        actor=actor,
        reason="finalized on chain",
        evidence={"signature": payout.signature, **(evidence or {})},
    )
    log.info("payouts.finalized", order_id=str(payout.order_id), signature=payout.signature)
