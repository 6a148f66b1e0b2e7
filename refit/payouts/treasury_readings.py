"""The treasury's balance, read by the worker every minute and stored (`treasury_readings`):
the payouts page and the metrics show the newest reading, so no page waits on the RPC and no
process that serves requests needs to know more of the treasury than its public key."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import structlog
from solders.pubkey import Pubkey
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import queue, resources
from refit.ledger.treasury import load_treasury
from refit.log_setup import describe_error
from refit.models import TreasuryReading
from refit.money import LAMPORTS_PER_SOL
from refit.settings import Settings
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

READ_TASK = "payouts.read_treasury_balance"
# A reading a minute: a month of them is ~43,000 small rows; older ones only grow the table.
KEEP_DAYS = 30


@dataclass(frozen=True)
class Balance:
    sol: Decimal
    at: dt.datetime


def _pubkey(settings: Settings) -> Pubkey:
    # The worker holds the keypair (checked against REFIT_TREASURY_PUBKEY when it started).
    if settings.treasury_pubkey is not None:
        return Pubkey.from_string(settings.treasury_pubkey)
    return load_treasury(settings).pubkey()


@queue.queue.periodic(cron="* * * * *")
@queue.queue.task(name=READ_TASK, queueing_lock=READ_TASK)
async def read_treasury_balance_task(timestamp: int) -> int | None:
    return await read_treasury_balance()


async def read_treasury_balance() -> int | None:
    """Ask the chain for the treasury's balance (no transaction open meanwhile), store it and
    forget readings older than KEEP_DAYS. Returns the lamports read, or None when the RPC did
    not answer: a warning, not a failed job (the next minute asks again; the pages show the
    newest reading with its time, so an old one shows its age)."""
    settings = resources.current().settings
    pubkey = _pubkey(settings)
    # solana-py's client costs ~0.3 s of CPU at import: paid at the first reading.
    from solana.exceptions import SolanaRpcException
    from solana.rpc.async_api import AsyncClient
    from solana.rpc.commitment import Confirmed

    try:
        async with AsyncClient(settings.solana_rpc_endpoint, commitment=Confirmed) as rpc:
            answer = await rpc.get_balance(pubkey)
    except (SolanaRpcException, OSError) as exc:
        log.warning("payouts.treasury_unreadable", treasury=str(pubkey), error=describe_error(exc))
        return None
    async with service_transaction(job=True) as session:
        session.add(
            TreasuryReading(pubkey=str(pubkey), lamports=answer.value, slot=answer.context.slot)
        )
        await session.execute(
            delete(TreasuryReading).where(
                TreasuryReading.at < func.now() - dt.timedelta(days=KEEP_DAYS)
            )
        )
    log.info("payouts.treasury_read", treasury=str(pubkey), lamports=answer.value)
    return answer.value


async def latest_balance(session: AsyncSession) -> Balance | None:
    """The newest stored reading, or None before the worker's first. (A treasury replaced is
    the newest within a minute: the worker reads the one it signs with.)"""
    reading = await session.scalar(
        select(TreasuryReading).order_by(TreasuryReading.at.desc()).limit(1)
    )
    if reading is None:
        return None
    return Balance(Decimal(reading.lamports) / LAMPORTS_PER_SOL, reading.at.astimezone(dt.UTC))
