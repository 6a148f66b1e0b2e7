"""Read side of orders: the seller's list (cursor pages) and one order with its history (and
its inspection and payout, once there are).

The seller's own reads are the hot path: each is ONE prepared statement on asyncpg
(refit.hot_path), a function of migration 0029 that takes the seller's role and claims and
reads under RLS, exactly as a `UserSessionDep` session would see; the order, its history,
inspection and payout come back as one JSON text, which goes straight into the response model,
with no ORM objects in between.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from pydantic import TypeAdapter
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import TypedDict

from refit import resources
from refit.models.order import Order, OrderStatus, OrderStatusHistory
from refit.orders.schemas import OrderDetail, OrderRead, StatusChange
from refit.orders.service import Created, order_not_found
from refit.pagination import decode_cursor, encode_cursor
from refit.signed_urls import evidence_photo_url

# A write's response reads these two as the seller's read does: migration 0029's
# `seller_order_json` holds the same two subqueries (a change to one is a change to both).
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
_EXTRAS_OF = text(f"SELECT {_INSPECTION}, {_PAYOUT} FROM orders o WHERE o.id = :id")  # noqa: S608 (built from this module's constants; the id is a bound parameter)


# The page as OrderPage writes it, from the rows as dicts, for what orjson cannot write
# (list_orders_json): OrderRead's fields as a TypedDict (made from the model, so the two
# cannot drift), serialized in pydantic's core without a model instance per row (the rows are
# PostgreSQL's, typed: nothing to validate).
def _as_stored(annotation: Any) -> Any:
    # An enum column comes as its text (the table's CHECK keeps it one of the values), and
    # is written so: str in place of the enum, or the serializer warns on every row.
    if annotation is OrderStatus:
        return str
    if annotation == OrderStatus | None:
        return str | None
    return annotation


_ORDER_ROW = TypedDict(  # type: ignore[misc]
    "_ORDER_ROW", {name: _as_stored(f.annotation) for name, f in OrderRead.model_fields.items()}
)


class _OrderPageRows(TypedDict):
    items: list[_ORDER_ROW]  # type: ignore[valid-type]
    next_cursor: str | None


_PAGE_WRITER = TypeAdapter(_OrderPageRows)
# The cursor's time goes as text: asyncpg sends the last microsecond of year 9999 (Python's
# datetime.max) as 'infinity', and the page after an order of that time would be itself.
_PAGE_QUERY = (
    f"SELECT {', '.join(OrderRead.model_fields)}"  # noqa: S608 (the model's field names)
    " FROM seller_orders_page($1, $2, $3::text::timestamptz, $4)"
)
# A transaction the explorer can show: broadcast, at least.
_ON_CHAIN = {"sent", "finalized"}


async def seller_order_detail(user_id: uuid.UUID, order_id: uuid.UUID) -> OrderDetail:
    """The seller's own order with its history (another seller's: 404), one round trip."""
    found = await resources.current().hot_path.row(
        "SELECT detail, plain FROM seller_order_json($1, $2)", user_id, order_id
    )
    if found is None or found["detail"] is None:
        raise order_not_found(order_id)
    if found["plain"]:
        # Validated from the text by pydantic's core: no Python objects in between.
        return OrderDetail.model_validate_json(found["detail"])
    row = json.loads(found["detail"])
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


async def list_orders_json(user_id: uuid.UUID, *, limit: int, cursor: str | None) -> bytes:
    """The seller's orders newest first, as the response body (OrderPage). Keyset pagination
    on (created_at, id): stable while orders are added. The rows come typed from PostgreSQL
    and are written as the response model writes them, with no model built per row."""
    after_created_at, after_id = decode_cursor(cursor) if cursor is not None else (None, None)
    after = after_created_at.isoformat() if after_created_at is not None else None
    rows = await resources.current().hot_path.fetch(
        _PAGE_QUERY, user_id, limit + 1, after, after_id
    )
    items = [dict(row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    page: Any = {
        "items": items,
        "next_cursor": encode_cursor(last["created_at"], last["id"]) if last else None,
    }
    try:
        # The columns come in OrderRead's order; orjson writes them as pydantic would
        # (times in UTC with Z, microseconds only when there are some; decimals as their
        # str, in quotes), at half the CPU: the byte-for-byte test holds it to that.
        return orjson.dumps(page, default=_as_text, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        # What orjson does not write as pydantic does, or at all (an integer past 64 bits
        # in device_details): pydantic's own writer.
        return _PAGE_WRITER.dump_json(page)


def _as_text(value: Any) -> str:
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)  # asyncpg's UUID is a subclass orjson leaves to us
    raise TypeError(f"{type(value).__name__} is not written by the fast page writer")


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
