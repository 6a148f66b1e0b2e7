"""The payout job: sign and store, send, wait for finality; never a chain call inside a
transaction. Each step commits before the next network call, so a crash anywhere resumes
from what is stored: a retry re-sends the same bytes, and a new transaction is signed only
once the chain's finalized view shows the stored one can never land and no transfer for
the order landed (`signing_guard`), whatever a node behind answers."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import procrastinate
import structlog
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from sqlalchemy.ext.asyncio import AsyncSession

from refit import metrics, queue, resources, sweeps
from refit.ledger.treasury import load_treasury
from refit.models.payout import OPEN, HoldReason, PayoutStatus
from refit.payouts import chain, screening, service, signing_guard, states
from refit.pricing.service import current_rate
from refit.pricing.sources import Rate
from refit.transactions import service_transaction

if TYPE_CHECKING:
    from solana.rpc.async_api import AsyncClient

log = structlog.get_logger(__name__)

# How long one run waits for finality before handing over to a retry (mainnet: ~13 s).
FINALITY_WAIT_SECONDS = 90.0
POLL_SECONDS = 0.25
# Re-signs in one run: each needs the previous transaction proven dead, so more is a bug.
MAX_SIGNINGS_PER_RUN = 3
SWEEP_GRACE_SECONDS = 300


class NotSettled(Exception):
    """Sent, not final yet and not expired: the retry looks again."""


class NotClearToSign(NotSettled):
    """The finalized view cannot yet prove a new signature safe (`signing_guard`): nothing
    is signed, the retry asks again."""


class TreasuryTooLow(Exception):
    """The treasury cannot pay this transfer, its fee and keep its rent-exempt minimum: the
    payout waits, unsigned, until it is funded (the retry and the sweep look again)."""


class DailyCapReached(Exception):
    """Signing this payout would pass today's cap: it waits, unsigned, and the retry (or the
    sweep, tomorrow) looks again."""


@dataclass(frozen=True)
class Stored:
    status: PayoutStatus
    signed_tx: bytes | None
    signature: str | None
    last_valid_block_height: int | None


@queue.queue.task(
    name=service.SEND_TASK,
    retry=procrastinate.RetryStrategy(max_attempts=40, wait=5, linear_wait=5),
)
async def send_payout_task(order_id: str) -> str:
    return await send_payout(uuid.UUID(order_id))


async def send_payout(order_id: uuid.UUID) -> str:
    """Drive the order's payout to the chain and back, as far as it goes in one run."""
    settings = resources.current().settings
    treasury = load_treasury(settings)
    # solana-py's client costs ~0.3 s of CPU at import: the worker pays it at its first
    # payout, not at every start.
    from solana.rpc.async_api import AsyncClient

    async with AsyncClient(settings.solana_rpc_endpoint, commitment=Confirmed) as rpc:
        stored = await _read(order_id)
        if stored is None or stored.status not in OPEN:
            return "nothing to do"
        if stored.signed_tx is None:
            await _sign(rpc, treasury, order_id, replacing=None)
        for _ in range(MAX_SIGNINGS_PER_RUN):
            stored = await _read(order_id)
            assert stored is not None
            if stored.status not in OPEN:
                return stored.status.value
            if stored.signed_tx is None:
                # Waits unsigned (the treasury too low, today's cap): the error is recorded
                # and alerted; the retry and the sweep look again.
                return "held unsigned"
            assert stored.signature and stored.last_valid_block_height
            try:
                if await chain.send(rpc, stored.signed_tx):
                    await _mark_sent(order_id, stored.signature)
            except chain.SendRefused as exc:
                await _record_error(order_id, str(exc))
                raise
            signature = Signature.from_string(stored.signature)
            outcome = await _settle(rpc, signature, stored.last_valid_block_height)
            if outcome is chain.Landing.FINALIZED:
                await _finish(order_id, stored.signature)
                metrics.PAYOUTS_FINALIZED.inc()
                return "finalized"
            if outcome is chain.Landing.FAILED:
                await _fail(order_id, stored.signature)
                return "failed"
            if outcome is chain.Landing.PENDING:
                raise NotSettled(f"{stored.signature} not finalized yet")
            log.warning("payouts.expired", order_id=str(order_id), signature=stored.signature)
            if await _sign(rpc, treasury, order_id, replacing=stored.signature):
                return "held on chain"
        raise RuntimeError(f"payout of {order_id}: re-signed {MAX_SIGNINGS_PER_RUN} times")


async def _read(order_id: uuid.UUID) -> Stored | None:
    async with service_transaction(job=True) as session:
        payout = await service.lock_payout(session, order_id)
        if payout is None:
            return None
        return Stored(
            payout.status, payout.signed_tx, payout.signature, payout.last_valid_block_height
        )


async def _sign(
    rpc: AsyncClient, treasury: Keypair, order_id: uuid.UUID, *, replacing: str | None
) -> bool:
    """Step A. The rate, the blockhash and the recipient's balance are fetched before the
    transaction opens. True when held instead: a transfer for the order is on chain."""
    rate = await current_rate(resources.current()) if replacing is None else None
    blockhash = await chain.latest_blockhash(rpc)
    planned = await _planned(rpc, order_id, rate)
    if not await _clear_to_sign(rpc, order_id, planned, treasury.pubkey()):
        return True
    await _check_treasury(rpc, treasury, order_id, planned.lamports)
    daily_max_usd = resources.current().settings.payout_daily_max_usd
    async with service_transaction(job=True) as session:
        payout = await service.lock_payout(session, order_id)
        assert payout is not None
        # Under the row lock: sign only if nothing was signed since we looked (or, when
        # replacing, only the very transaction proven dead is replaced).
        if payout.status not in OPEN or payout.signature != replacing:
            return False
        if await screening.held_before_signing(session, payout, resources.current().settings):
            return False
        # A re-sign replaces a transfer already counted; only a first signing is capped.
        capped = payout.signed_at is None and not await service.daily_cap_allows(
            session, payout, daily_max_usd
        )
        if capped:
            await states.write(
                session, payout, payout.status, actor=service.ACTOR, error=service.DAILY_CAP_REACHED
            )
        else:
            await service.store_signed(
                session,
                payout,
                treasury=treasury,
                rate=rate,
                blockhash=blockhash,
                at_least_lamports=planned.at_least_lamports,
            )
    if capped:
        log.warning("payouts.daily_cap_reached", order_id=str(order_id))
        raise DailyCapReached(f"payout of {order_id}: {service.DAILY_CAP_REACHED}")
    return False


@dataclass(frozen=True)
class Planned:
    lamports: int  # what the transfer will carry
    at_least_lamports: int  # the floor the recipient's wallet sets (0 once priced)
    reference: Pubkey
    previous: signing_guard.Previous | None  # the stored transaction a re-sign replaces


async def _planned(rpc: AsyncClient, order_id: uuid.UUID, rate: Rate | None) -> Planned:
    """A re-sign keeps the amount the payout was first signed with."""
    async with service_transaction(job=True) as session:
        payout = await service.lock_payout(session, order_id)
        assert payout is not None
        lamports, amount_usd, recipient = payout.lamports, payout.amount_usd, payout.recipient
        reference = Pubkey.from_string(payout.reference)
        previous = None
        if payout.signature is not None and payout.last_valid_block_height is not None:
            previous = signing_guard.Previous(payout.signature, payout.last_valid_block_height)
    if lamports is not None:
        return Planned(lamports, 0, reference, previous)
    assert rate is not None
    at_least = await chain.recipient_shortfall(rpc, Pubkey.from_string(recipient))
    lamports = service.price(amount_usd, rate, at_least_lamports=at_least)[2]
    return Planned(lamports, at_least, reference, previous)


async def _clear_to_sign(
    rpc: AsyncClient, order_id: uuid.UUID, planned: Planned, treasury: Pubkey
) -> bool:
    """Before any new signature, first or re-sign (`signing_guard`). A transfer carrying the
    order's reference that the table does not know of (a database restored from an older
    backup lost the payout row) means the seller may already be paid: nothing is signed, the
    payout is held (`already_on_chain`) with an alert until an operator resolves it with the
    transfer found, or cancels it (refit/payouts/recovery.py); the sweep leaves held payouts
    alone. Not provable yet (a node behind, a blockhash still valid): the retry asks again."""
    clearance = await signing_guard.clear_to_sign(
        rpc, planned.reference, planned.previous, treasury
    )
    if clearance.verdict is signing_guard.Verdict.CLEAR:
        return True
    if clearance.verdict is signing_guard.Verdict.WAIT:
        log.warning("payouts.not_clear_to_sign", order_id=str(order_id), reason=clearance.reason)
        raise NotClearToSign(f"payout of {order_id}: {clearance.reason}")
    found = clearance.found
    async with service_transaction(job=True) as session:
        payout = await service.lock_payout(session, order_id)
        if payout is not None and payout.status in OPEN:
            await states.write(
                session,
                payout,
                PayoutStatus.HELD,
                actor=service.ACTOR,
                hold=HoldReason.ALREADY_ON_CHAIN,
                error=f"{service.ALREADY_ON_CHAIN}: {', '.join(found)}"[:2000],
                evidence={"signatures": found},
            )
    log.error("payouts.already_on_chain", order_id=str(order_id), signatures=found)
    return False


async def _check_treasury(
    rpc: AsyncClient, treasury: Keypair, order_id: uuid.UUID, lamports: int
) -> None:
    """Before anything is signed: the treasury must cover the amount, the fee and its own
    rent-exempt minimum, or the payout waits with a clear error and an alert (error log)."""
    needed = lamports + chain.TRANSFER_FEE_LAMPORTS + await chain.rent_exempt_minimum(rpc)
    held = (await rpc.get_balance(treasury.pubkey())).value
    if held >= needed:
        return
    await _record_error(order_id, service.TREASURY_TOO_LOW)
    log.error(
        "payouts.treasury_too_low",
        order_id=str(order_id),
        treasury=str(treasury.pubkey()),
        balance=held,
        needed=needed,
    )
    raise TreasuryTooLow(f"treasury holds {held} lamports, the payout needs {needed}")


async def _mark_sent(order_id: uuid.UUID, signature: str) -> None:
    async with service_transaction(job=True) as session:
        payout = await service.lock_payout(session, order_id)
        if payout is not None and payout.signature == signature:
            if payout.status is PayoutStatus.SIGNED:
                await states.write(
                    session,
                    payout,
                    PayoutStatus.SENT,
                    actor=service.ACTOR,
                    evidence={"signature": signature},
                )
                log.info("payouts.sent", order_id=str(order_id), signature=signature)


async def _record_error(order_id: uuid.UUID, error: str) -> None:
    async with service_transaction(job=True) as session:
        payout = await service.lock_payout(session, order_id)
        if payout is not None and payout.status in OPEN:
            await states.write(session, payout, payout.status, actor=service.ACTOR, error=error)


async def _settle(
    rpc: AsyncClient, signature: Signature, last_valid_block_height: int
) -> chain.Landing:
    """Step C: poll until finalized, failed or provably expired, up to a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FINALITY_WAIT_SECONDS
    while True:
        outcome = await chain.landing(rpc, signature, last_valid_block_height)
        if outcome is not chain.Landing.PENDING or loop.time() >= deadline:
            return outcome
        await asyncio.sleep(POLL_SECONDS)


async def _finish(order_id: uuid.UUID, signature: str) -> None:
    async with service_transaction(job=True) as session:
        payout = await service.lock_payout(session, order_id)
        if payout is None or payout.status is PayoutStatus.FINALIZED:
            return
        if payout.signature != signature:
            raise RuntimeError(f"payout of {order_id} changed signature while finalizing")
        await service.finish(session, payout)


async def _fail(order_id: uuid.UUID, signature: str) -> None:
    # Landed with an error: no lamports moved, but nothing is re-signed by itself either;
    # an operator looks at it (GET /api/admin/payouts?status=failed).
    async with service_transaction(job=True) as session:
        payout = await service.lock_payout(session, order_id)
        if payout is not None and payout.signature == signature:
            await states.write(
                session,
                payout,
                PayoutStatus.FAILED,
                actor=service.ACTOR,
                error="the transfer landed with an error",
                evidence={"signature": signature},
            )
    log.error("payouts.failed_on_chain", order_id=str(order_id), signature=signature)


async def _flag(session: AsyncSession, order_id: uuid.UUID, reason: str) -> None:
    # After the reason it is held for, if any: the held payouts' series match its start.
    payout = await service.lock_payout(session, order_id)
    if payout is not None and payout.status in OPEN:
        held = f"{payout.error[: 2000 - len(reason) - 2]}; " if payout.error else ""
        await states.write(
            session, payout, payout.status, actor="system:sweep", error=held + reason
        )


# Payouts still open (pending, signed, sent), waits included (a payout pending with the
# treasury too low is re-run REFIT_SWEEP_MAX_ATTEMPTS times, not for ever); `held` and
# `cancelled` ones wait for an operator and are never re-run.
STUCK = sweeps.Stuck(
    task=service.SEND_TASK,
    rows="payouts p WHERE p.status IN ('pending', 'signed', 'sent')",
    row_id="p.order_id",
    since="p.updated_at",
    job_arg="order_id",
    requeue=service.defer_send,
    flag=_flag,
)


@queue.queue.periodic(cron="*/2 * * * *")
@queue.queue.task(name="payouts.sweep", queueing_lock="payouts.sweep")
async def sweep_task(timestamp: int) -> int:
    return await sweep()


async def sweep(grace_seconds: int = SWEEP_GRACE_SECONDS) -> int:
    """Payouts still open (pending, signed, sent), unchanged for `grace_seconds` and with no
    job waiting or running get their job again: a job out of attempts or lost never leaves
    a seller unpaid without the sweep trying again, up to REFIT_SWEEP_MAX_ATTEMPTS times;
    then the payout's error says the sweep gave up, for an operator."""
    return await sweeps.requeue_stuck(STUCK, grace_seconds)
