"""The payouts page: waiting for a second admin, failed and held (with their ways out), sent
today; the treasury's balance (the worker's newest reading: no RPC call, no keypair) and how
much of today's cap is used."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import resources
from refit.dashboard import payout_panel
from refit.dashboard.render import page
from refit.dashboard.session import OperatorDep
from refit.models import Order
from refit.models.payout import OPEN, Payout, PayoutStatus
from refit.payouts.service import START_OF_UTC_DAY, signed_today_usd
from refit.payouts.treasury_readings import latest_balance
from refit.transactions import SessionDep

router = APIRouter()


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
    held = await _with_orders(session, Payout.status == PayoutStatus.HELD)
    open_ = await _with_orders(session, Payout.status.in_(OPEN))
    sent_today = await _with_orders(
        session,
        Payout.status == PayoutStatus.FINALIZED,
        Payout.finalized_at >= literal_column(START_OF_UTC_DAY),
    )
    used = await signed_today_usd(session)
    reading = await latest_balance(session)
    cap = settings.payout_daily_max_usd
    moves = {
        p.id: payout_panel.offered(p, operator, settings.payout_max_usd) for p, _ in failed + held
    }
    return page(
        request,
        "payouts.html",
        waiting=waiting,
        failed=failed,
        held=held,
        moves=moves,
        open_payouts=open_,
        sent_today=sent_today,
        balance=reading.sol if reading else None,
        balance_at=reading.at if reading else None,
        cap=cap,
        used=used,
        used_pct=min(100, int(used * 100 / cap)) if cap else 100,
        per_payout_max=settings.payout_max_usd,
    )
