"""Charts drawn on the server as inline SVG: the geometry is computed here, the templates
only place it. Every mark carries its number as text (and a <title>), so the chart reads
without hovering and a screen reader gets the numbers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from refit.dashboard.stats import Numbers
from refit.models import OrderStatus

WIDTH, HEIGHT, BOTTOM, TOP = 640, 220, 24, 18
# Room for the names of the horizontal bars (statuses, funnel steps).
LABELS = 160

COLORS = {
    OrderStatus.PENDING: "#9aa5b1",
    OrderStatus.PROCESSING_SHIPMENT: "#b8a1d9",
    OrderStatus.AWAITING_SHIPMENT: "#7b61c4",
    OrderStatus.SHIPPED: "#3d8bd9",
    OrderStatus.RECEIVED: "#2bb3b1",
    OrderStatus.INSPECTING: "#e3a72f",
    OrderStatus.OFFER_PENDING: "#e07b39",
    OrderStatus.RETURNING: "#c9544d",
    OrderStatus.COMPLETED: "#3c9a5f",
    OrderStatus.CANCELLED: "#5f6b7a",
    OrderStatus.IMPORTED: "#c3c8ce",
}


@dataclass
class Segment:
    y: float
    height: float
    color: str
    title: str


@dataclass
class Bar:
    x: float
    width: float
    label: str
    total: str
    total_y: float
    segments: list[Segment] = field(default_factory=list)
    # The day is written under every few bars only, counted back from the last (today).
    tick: bool = True


@dataclass
class Row:
    label: str
    value: str
    width: float
    note: str = ""


def _day(day: dt.date) -> str:
    return day.strftime("%d %b")


def _bars(values: list[tuple[str, list[tuple[int, str, str]], str]]) -> list[Bar]:
    """Stacked bars: for each (label, [(value, color, title)], total text)."""
    top = max((sum(v for v, _, _ in parts) for _, parts, _ in values), default=0) or 1
    plot = HEIGHT - BOTTOM - TOP
    slot = WIDTH / max(len(values), 1)
    bars = []
    for i, (label, parts, total) in enumerate(values):
        bar = Bar(x=i * slot + slot * 0.15, width=slot * 0.7, label=label, total=total, total_y=0)
        y = float(HEIGHT - BOTTOM)
        for value, color, title in parts:
            if value <= 0:
                continue
            h = plot * value / top
            y -= h
            bar.segments.append(Segment(y=y, height=h, color=color, title=title))
        bar.total_y = y - 4
        bars.append(bar)
    every = -(-len(bars) // 7) or 1
    for i, bar in enumerate(bars):
        bar.tick = (len(bars) - 1 - i) % every == 0
    return bars


def orders_per_day(numbers: Numbers) -> list[Bar]:
    values = []
    for day in numbers.days:
        counts = numbers.orders_per_day.get(day, {})
        parts = [
            (counts.get(s, 0), COLORS[s], f"{_day(day)}: {counts.get(s, 0)} {s.value}")
            for s in OrderStatus
        ]
        total = sum(counts.values())
        values.append((_day(day), parts, str(total) if total else ""))
    return _bars(values)


def payouts_per_day(numbers: Numbers) -> list[Bar]:
    values = []
    for day in numbers.days:
        n, usd = numbers.payouts_per_day.get(day, (0, 0))
        title = f"{_day(day)}: {n} payouts, ${usd:,.2f}"
        values.append((_day(day), [(n, "#3c9a5f", title)], str(n) if n else ""))
    return _bars(values)


def funnel(numbers: Numbers) -> list[Row]:
    first = numbers.funnel[0][1] if numbers.funnel else 0
    top = max((n for _, n in numbers.funnel), default=0) or 1
    return [
        Row(
            label=step,
            value=str(n),
            width=(WIDTH - LABELS - 160) * n / top,
            note=f"{n * 100 / first:.0f}% of quotes" if first else "",
        )
        for step, n in numbers.funnel
    ]


def median_stays(numbers: Numbers, duration: object) -> list[Row]:
    assert callable(duration)
    stays = [(s, numbers.median_stay[s]) for s in OrderStatus if s in numbers.median_stay]
    top = max((median for _, (median, _) in stays), default=0) or 1
    return [
        Row(
            label=status.value,
            value=duration(median),
            width=max(2.0, (WIDTH - LABELS - 160) * median / top),
            note=f"{n} stay{'' if n == 1 else 's'}",
        )
        for status, (median, n) in stays
    ]
