"""The numbers page: orders per day by status, the funnel, the median stay in each status,
the revised-offer rate and payouts per day, drawn on the server."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from refit.dashboard import charts
from refit.dashboard.render import duration, page
from refit.dashboard.session import OperatorDep
from refit.dashboard.stats import numbers
from refit.transactions import SessionDep

router = APIRouter()


@router.get("/numbers", response_class=HTMLResponse)
async def numbers_page(
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    days: Annotated[int, Query(ge=1, le=90)] = 14,
) -> HTMLResponse:
    found = await numbers(session, days)
    rate = f"{found.revised * 100 / found.inspected:.0f}%" if found.inspected else "—"
    return page(
        request,
        "numbers.html",
        days=days,
        width=charts.WIDTH,
        labels=charts.LABELS,
        height=charts.HEIGHT,
        baseline=charts.HEIGHT - charts.BOTTOM,
        colors=charts.COLORS,
        orders_per_day=charts.orders_per_day(found),
        payouts_per_day=charts.payouts_per_day(found),
        funnel=charts.funnel(found),
        stays=charts.median_stays(found, duration),
        revised=found.revised,
        inspected=found.inspected,
        revised_rate=rate,
        payouts_total=sum(usd for _, usd in found.payouts_per_day.values()),
    )
