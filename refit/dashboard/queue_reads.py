"""The work queue's reads: one page of orders, the longest in their status first, paged by
keyset (no OFFSET: page 20 costs what page 1 does, and an order moving meanwhile is neither
skipped nor shown twice on the next page); and the count behind each filter, in one query."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from refit.backoffice.reads import order_search
from refit.dashboard.work import FINAL, Work, condition, joined, live_work
from refit.errors import Unprocessable
from refit.models import Operator, Order, OrderStatus, User
from refit.models.payout import Payout, PayoutStatus

PAGE_SIZE = 50


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after this order in (waiting since, id) order."""

    since: dt.datetime
    id: uuid.UUID

    def encode(self) -> str:
        return f"{self.since.isoformat()}~{self.id}"

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        since, _, order_id = raw.partition("~")
        try:
            at = dt.datetime.fromisoformat(since)
            if at.tzinfo is None:
                raise ValueError("no time zone")
            return cls(at, uuid.UUID(order_id))
        except ValueError:
            raise Unprocessable(
                "This page link is damaged: start from the first page", code="invalid_cursor"
            ) from None


@dataclass(frozen=True)
class QueueRow:
    id: uuid.UUID
    order_number: str
    status: OrderStatus
    device: str
    quoted_price_usd: Decimal
    final_price_usd: Decimal | None
    offer_accepted: bool
    tracking_number: str | None
    wallet_address: str
    email: str | None
    attention_reason: str | None
    since: dt.datetime
    payout_status: PayoutStatus | None
    claimed_by: str | None
    mine: bool


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    next_cursor: str | None


def _base() -> Select[Order, str, str | None, PayoutStatus | None, str | None]:
    return joined(
        select(Order, User.wallet_address, User.email, Payout.status, Operator.username)
        .join(User, User.id == Order.user_id)
        .outerjoin(Operator, Operator.id == Order.claimed_by)
    )


async def queue(
    session: AsyncSession,
    *,
    work: Work,
    status: OrderStatus | None,
    q: str | None,
    after: Cursor | None,
    operator_id: uuid.UUID,
    max_usd: Decimal,
) -> QueuePage:
    """One page: orders in `status` if given; else matching `q` (part of the order number,
    tracking number or email, the start of the wallet) among all; else those `work` names."""
    query = _base()
    term = (q or "").strip()
    if status is not None:
        query = query.where(Order.status == status)
    elif not term:
        query = query.where(live_work(), condition(work, operator_id=operator_id, max_usd=max_usd))
    if term:
        query = query.where(order_search(term))
    if after is not None:
        # Row comparison: served by ix_orders_status_changed_at_id as an index range.
        query = query.where(
            tuple_(Order.status_changed_at, Order.id) > tuple_(after.since, after.id)
        )
    query = query.order_by(Order.status_changed_at, Order.id).limit(PAGE_SIZE + 1)
    found = (await session.execute(query)).all()
    rows = [
        QueueRow(
            id=order.id,
            order_number=order.order_number,
            status=order.status,
            device=" ".join(
                p for p in (order.device_brand, order.device_model, order.device_storage) if p
            ),
            quoted_price_usd=order.quoted_price_usd,
            final_price_usd=order.final_price_usd,
            offer_accepted=order.offer_accepted_at is not None,
            tracking_number=order.tracking_number,
            wallet_address=wallet,
            email=email,
            attention_reason=order.attention_reason,
            since=order.status_changed_at,
            payout_status=payout_status,
            claimed_by=holder,
            mine=order.claimed_by == operator_id,
        )
        for order, wallet, email, payout_status, holder in found[:PAGE_SIZE]
    ]
    more = len(found) > PAGE_SIZE
    last = rows[-1] if rows else None
    next_cursor = Cursor(last.since, last.id).encode() if more and last else None
    return QueuePage(rows, next_cursor)


async def counts(
    session: AsyncSession, *, operator_id: uuid.UUID, max_usd: Decimal
) -> tuple[dict[Work, int], dict[OrderStatus, int]]:
    """How many orders each filter and each status not final holds: one statement, one pass
    over the open orders only (polled every second by every open queue: the finished ones,
    nearly all of the table, are never counted)."""
    works = list(Work)
    open_statuses = [s for s in OrderStatus if s not in FINAL]
    columns: list[ColumnElement[int]] = [
        func.count().filter(condition(w, operator_id=operator_id, max_usd=max_usd)) for w in works
    ]
    columns += [func.count().filter(Order.status == s) for s in open_statuses]
    query = joined(select(*columns).select_from(Order)).where(live_work())
    values = list((await session.execute(query)).one())
    by_work = dict(zip(works, values[: len(works)], strict=True))
    by_status = dict(zip(open_statuses, values[len(works) :], strict=True))
    return by_work, by_status
