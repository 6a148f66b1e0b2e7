"""The payouts page: waiting for a second admin, failed, sent today; the treasury's balance
(asked of the chain with no transaction open) and how much of today's cap is used."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import resources
from refit.dashboard.render import page
from refit.dashboard.session import OperatorDep
from refit.ledger.treasury import load_treasury
from refit.models import Order
from refit.models.payout import OPEN, Payout, PayoutStatus
from refit.money import LAMPORTS_PER_SOL
from refit.payouts.service import START_OF_UTC_DAY, signed_today_usd
from refit.transactions import SessionDep

log = structlog.get_logger(__name__)

router = APIRouter()
BALANCE_TIMEOUT_SECONDS = 3.0


async def treasury_balance_sol() -> Decimal | None:
    """The treasury's balance in SOL, or None when the RPC does not answer in time."""
    settings = resources.current().settings
    # solana-py's client costs ~0.3 s of CPU at import: the API pays it when this page is
    # first shown, not at every start.
    from solana.rpc.async_api import AsyncClient

    try:
        pubkey = load_treasury(settings).pubkey()
        async with AsyncClient(settings.solana_rpc_endpoint) as rpc:
            async with asyncio.timeout(BALANCE_TIMEOUT_SECONDS):
                lamports = (await rpc.get_balance(pubkey)).value
    except Exception as exc:  # the page still shows everything else
        log.warning("dashboard.treasury_balance_unavailable", error=repr(exc)[:200])
        return None
    return Decimal(lamports) / LAMPORTS_PER_SOL


async def _with_orders(session: AsyncSession, *where: object) -> list[tuple[Payout, str]]:
    rows = await session.execute(
        select(Payout, Order.order_number)
        .join(Order, Order.id == Payout.order_id)
        .where(*where)  # type: ignore[arg-type]
        .order_by(Payout.created_at, Payout.id)
        .limit(200)
    )
    return [(payout, number) for payout, number in rows.all()]


@router.get("/payouts", response_class=HTMLResponse)
async def payouts_page(
    request: Request, session: SessionDep, operator: OperatorDep
) -> HTMLResponse:
    settings = resources.current().settings
    waiting = await _with_orders(session, Payout.status == PayoutStatus.AWAITING_APPROVAL)
    failed = await _with_orders(session, Payout.status == PayoutStatus.FAILED)
    open_ = await _with_orders(session, Payout.status.in_(OPEN))
    sent_today = await _with_orders(
        session,
        Payout.status == PayoutStatus.FINALIZED,
        Payout.finalized_at >= literal_column(START_OF_UTC_DAY),
    )
    used = await signed_today_usd(session)
    # Read-only and no row locked: a slow RPC (bounded above) holds nothing anyone waits on.
    balance = await treasury_balance_sol()
    cap = settings.payout_daily_max_usd
    return page(
        request,
        "payouts.html",
        waiting=waiting,
        failed=failed,
        open_payouts=open_,
        sent_today=sent_today,
        balance=balance,
        cap=cap,
        used=used,
        used_pct=min(100, int(used * 100 / cap)) if cap else 100,
        per_payout_max=settings.payout_max_usd,
    )
