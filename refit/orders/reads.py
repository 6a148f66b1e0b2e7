"""Read side of orders: the seller's list (cursor pages) and one order with its history (and
its inspection and payout, once there are).

The seller's own reads are the hot path: each is ONE round trip to PostgreSQL
(`one_message.fetch_as_user`: role, claims, the query and the commit pipelined), the order and
its history come back from one query, and rows go straight into the response model, with no
ORM objects in between. RLS decides visibility exactly as in a `UserSessionDep` session.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from refit import one_message, resources
from refit.models.order import Order, OrderStatusHistory
from refit.orders.schemas import OrderDetail, OrderPage, OrderRead, StatusChange
from refit.orders.service import Created, order_not_found
from refit.pagination import decode_cursor, encode_cursor
from refit.signed_urls import evidence_photo_url

# The history as JSON built by PostgreSQL, in the order it happened.
_HISTORY = """
coalesce((
  SELECT json_agg(json_build_object('from_status', h.from_status, 'status', h.status,
                                    'actor', h.actor, 'notes', h.notes,
                                    'created_at', h.created_at)
                  ORDER BY h.created_at, h.id)
  FROM order_status_history h WHERE h.order_id = o.id), '[]') AS status_history
"""
# The inspection (its own row and photos: RLS lets a seller read those of their orders), once
# there is one; the photos as ids, signed into URLs here.
_INSPECTION = """
(SELECT json_build_object('grade', i.grade, 'storage', i.storage, 'notes', i.notes,
                          'checklist', i.checklist, 'inspected_at', i.created_at,
                          'photos', coalesce((
                            SELECT json_agg(p.id ORDER BY p.created_at, p.id)
                            FROM evidence_photos p WHERE p.order_id = o.id), '[]'))
 FROM inspections i WHERE i.order_id = o.id) AS inspection
"""
# The payout, once asked for (RLS and column grants let a seller read these of their own).
# Amounts as text: JSON numbers would come back as floats.
_PAYOUT = """
(SELECT json_build_object('status', p.status, 'amount_usd', p.amount_usd::text,
                          'amount_sol', p.amount_sol::text, 'lamports', p.lamports,
                          'signature', p.signature)
 FROM payouts p WHERE p.order_id = o.id) AS payout
"""
_ORDER_DETAIL = (
    f"SELECT o.*, {_HISTORY}, {_INSPECTION}, {_PAYOUT} FROM orders o WHERE o.id = %(id)s"  # noqa: S608 (built from this module's constants; the id is a bound parameter)
)
_EXTRAS_OF = text(f"SELECT {_INSPECTION}, {_PAYOUT} FROM orders o WHERE o.id = :id")  # noqa: S608 (built from this module's constants; the id is a bound parameter)
# A transaction the explorer can show: broadcast, at least.
_ON_CHAIN = {"sent", "finalized"}
_ORDER_PAGE = """
SELECT o.* FROM orders o
WHERE o.user_id = %(user_id)s {after}
ORDER BY o.created_at DESC, o.id DESC
LIMIT %(limit)s
"""
_AFTER = "AND (o.created_at, o.id) < (%(created_at)s, %(id)s)"


async def seller_order_detail(user_id: uuid.UUID, order_id: uuid.UUID) -> OrderDetail:
    """The seller's own order with its history (another seller's: 404), one round trip."""
    rows = await one_message.fetch_as_user(
        resources.current().engine, user_id, _ORDER_DETAIL, {"id": order_id}
    )
    if not rows:
        raise order_not_found(order_id)
    row = rows[0]
    row["inspection"] = _with_photo_urls(row["inspection"])
    row["payout"] = _with_explorer_url(row["payout"])
    return OrderDetail.model_validate(row)


def explorer_url(signature: str) -> str:
    """The transaction on the Solana explorer: devnet or testnet by name, a local endpoint
    (the local ledger) as a custom cluster at its URL, anything else as mainnet. A remote
    URL is never put in the link: providers' URLs carry their API key."""
    rpc = resources.current().settings.solana_rpc_endpoint
    base = f"https://explorer.solana.com/tx/{signature}"
    host = urlsplit(rpc).hostname or ""
    if _is_local(rpc):
        return f"{base}?{urlencode({'cluster': 'custom', 'customUrl': rpc})}"
    for cluster in ("devnet", "testnet"):
        if cluster in host:
            return f"{base}?cluster={cluster}"
    return base


def public_explorer_url(signature: str) -> str | None:
    """`explorer_url` for a link read away from this machine (an email): None on a local
    endpoint, which only a browser on the machine running the ledger could reach."""
    if _is_local(resources.current().settings.solana_rpc_endpoint):
        return None
    return explorer_url(signature)


def _is_local(rpc: str) -> bool:
    return (urlsplit(rpc).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _with_explorer_url(payout: dict[str, Any] | None) -> dict[str, Any] | None:
    if payout is None:
        return None
    signature = payout.get("signature")
    url = explorer_url(signature) if signature and payout["status"] in _ON_CHAIN else None
    return {**payout, "explorer_url": url}


def _with_photo_urls(inspection: dict[str, Any] | None) -> dict[str, Any] | None:
    if inspection is None:
        return None
    settings = resources.current().settings
    return {
        **inspection,
        "photos": [evidence_photo_url(settings, photo_id) for photo_id in inspection["photos"]],
    }


async def list_orders(user_id: uuid.UUID, *, limit: int, cursor: str | None) -> OrderPage:
    """Newest first. Keyset pagination on (created_at, id): stable while orders are added."""
    params: dict[str, Any] = {"user_id": user_id, "limit": limit + 1}
    after = ""
    if cursor is not None:
        params["created_at"], params["id"] = decode_cursor(cursor)
        after = _AFTER
    rows = await one_message.fetch_as_user(
        resources.current().engine, user_id, _ORDER_PAGE.format(after=after), params
    )
    items = rows[:limit]
    last = items[-1] if len(rows) > limit else None
    return OrderPage(
        items=[OrderRead.model_validate(r) for r in items],
        next_cursor=encode_cursor(last["created_at"], last["id"]) if last else None,
    )


async def history_of(session: AsyncSession, order_id: uuid.UUID) -> Sequence[OrderStatusHistory]:
    """The order's moves in the order they happened (the operators' story reads it too)."""
    return (
        await session.scalars(
            select(OrderStatusHistory)
            .where(OrderStatusHistory.order_id == order_id)
            .order_by(OrderStatusHistory.created_at, OrderStatusHistory.id)
        )
    ).all()


async def order_detail(session: AsyncSession, order: Order) -> OrderDetail:
    """The order and its history as a write's response, read in the write's transaction."""
    history = await history_of(session, order.id)
    extras = (await session.execute(_EXTRAS_OF, {"id": order.id})).mappings().one()
    return OrderDetail.model_validate(
        {
            **OrderRead.model_validate(order).model_dump(),
            "status_history": [StatusChange.model_validate(h) for h in history],
            "inspection": _with_photo_urls(extras["inspection"]),
            "payout": _with_explorer_url(extras["payout"]),
        }
    )


def created_detail(created: Created) -> OrderDetail:
    """A new order's response, from the rows its create wrote (nothing read back): no
    inspection or payout yet, one history row."""
    return OrderDetail.model_validate(
        {
            **OrderRead.model_validate(created.order).model_dump(),
            "status_history": [StatusChange.model_validate(created.first_move)],
            "inspection": None,
            "payout": None,
        }
    )
