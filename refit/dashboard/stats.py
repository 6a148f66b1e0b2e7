"""The numbers page's reads: one query per chart, over the orders of the last `days` days."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from refit.models import OrderStatus

# Days are UTC days, as the payouts' daily cap counts them.
_DAY = "(date_trunc('day', {col} AT TIME ZONE 'UTC'))::date"
_SINCE = (
    "(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
    " - make_interval(days => :days - 1)"
)

_ORDERS_PER_DAY = f"""
SELECT {_DAY.format(col="created_at")} AS day, status, count(*) AS n
FROM orders WHERE created_at >= {_SINCE} GROUP BY 1, 2
"""  # noqa: S608 (constant fragments of this module; :days is bound)
_FUNNEL = f"""
SELECT
  (SELECT count(*) FROM quotes WHERE created_at >= {_SINCE}) AS quote,
  count(*) AS "order",
  count(*) FILTER (WHERE label_purchased_at IS NOT NULL OR tracking_number IS NOT NULL) AS label,
  count(*) FILTER (WHERE shipped_at IS NOT NULL) AS shipped,
  count(*) FILTER (WHERE received_at IS NOT NULL) AS received,
  count(*) FILTER (WHERE completed_at IS NOT NULL AND payment_tx_signature IS NOT NULL) AS paid
FROM orders WHERE created_at >= {_SINCE}
"""  # noqa: S608 (constant fragments of this module; :days is bound)
# How long each stay in a status lasted: from entering it to the next move (stays not yet
# over are left out: they have no length yet).
_MEDIAN_STAY = f"""
WITH stays AS (
  SELECT h.status, extract(epoch FROM lead(h.created_at) OVER w - h.created_at) AS seconds
  FROM order_status_history h JOIN orders o ON o.id = h.order_id
  WHERE o.created_at >= {_SINCE}
  WINDOW w AS (PARTITION BY h.order_id ORDER BY h.created_at, h.id)
)
SELECT status, percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median, count(*) AS n
FROM stays WHERE seconds IS NOT NULL GROUP BY status
"""  # noqa: S608 (constant fragments of this module; :days is bound)
_REVISED = f"""
SELECT count(*) FILTER (WHERE outcome = 'revised_offer') AS revised, count(*) AS inspected
FROM inspections WHERE created_at >= {_SINCE}
"""  # noqa: S608 (constant fragments of this module; :days is bound)
_PAYOUTS_PER_DAY = f"""
SELECT {_DAY.format(col="finalized_at")} AS day, count(*) AS n, sum(amount_usd) AS usd
FROM payouts WHERE status = 'finalized' AND finalized_at >= {_SINCE} GROUP BY 1
"""  # noqa: S608 (constant fragments of this module; :days is bound)

FUNNEL_STEPS = ("quote", "order", "label", "shipped", "received", "paid")


@dataclass(frozen=True)
class Numbers:
    days: list[dt.date]
    orders_per_day: dict[dt.date, dict[OrderStatus, int]]
    funnel: list[tuple[str, int]]
    median_stay: dict[OrderStatus, tuple[float, int]]
    revised: int
    inspected: int
    payouts_per_day: dict[dt.date, tuple[int, Decimal]]


async def numbers(session: AsyncSession, days: int) -> Numbers:
    params = {"days": days}
    today = await session.scalar(text("SELECT (now() AT TIME ZONE 'UTC')::date"))
    assert isinstance(today, dt.date)
    span = [today - dt.timedelta(days=n) for n in reversed(range(days))]
    per_day: dict[dt.date, dict[OrderStatus, int]] = {day: {} for day in span}
    for day, status, n in (await session.execute(text(_ORDERS_PER_DAY), params)).all():
        per_day.setdefault(day, {})[OrderStatus(status)] = n
    funnel_row = (await session.execute(text(_FUNNEL), params)).mappings().one()
    stays = {
        OrderStatus(status): (float(median), n)
        for status, median, n in (await session.execute(text(_MEDIAN_STAY), params)).all()
    }
    revised, inspected = (await session.execute(text(_REVISED), params)).one()
    payouts = {
        day: (n, Decimal(usd))
        for day, n, usd in (await session.execute(text(_PAYOUTS_PER_DAY), params)).all()
    }
    return Numbers(
        days=span,
        orders_per_day=per_day,
        funnel=[(step, int(funnel_row[step])) for step in FUNNEL_STEPS],
        median_stay=stays,
        revised=int(revised),
        inspected=int(inspected),
        payouts_per_day=payouts,
    )
