"""The door for orders that start life somewhere else (the browser-storage import).

An imported order is history, never an instruction: the browser's storage was never a system
of record, and a seller can write anything into an export. It is inserted in status
`imported` (which no move, queue, label, inspection or payout takes: states.py) with the
status the browser showed kept beside it (`imported_status`) for display, with its device,
prices and dates as the seller saw them. What the export alone asserts and the operational
side would act on is never taken: no tracking number or label of either leg, no payout
signature (the importer drops them and says so).

Beside `create_order()` (a new order in `pending`) this is the only other code that inserts
orders; no move happens here (no follow-ups, no realtime event). The order number is the
database's (next_order_number()), as for every order. Rows go in as one array per column
(`INSERT ... SELECT FROM unnest(...)`): two statements per batch whatever its size.

The way on from an imported order that was still open ("continue") is
refit.localstorage.continuing: it needs the quotes domain, which the orders core never imports.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
from refit.models.order import OrderStatus
from refit.money import sol_to_lamports
from refit.orders.states import STAMPS

IMPORTED_NOTE = "imported"

S = OrderStatus
# An imported order its seller may go on with: one the browser had not finished or given up.
CONTINUABLE = frozenset(s for s in S if s not in (S.COMPLETED, S.CANCELLED, S.IMPORTED))


@dataclass(frozen=True)
class ImportedOrder:
    id: uuid.UUID
    user_id: uuid.UUID
    # The status the browser showed (display only: the order's own status is `imported`).
    shown_status: OrderStatus
    device_brand: str
    device_model: str
    device_storage: str | None
    device_category: str | None
    device_condition: str
    device_details: dict[str, Any] | None
    quoted_price_usd: Decimal
    quoted_price_sol: Decimal
    shipping_address_id: uuid.UUID | None
    created_at: dt.datetime
    # When it entered its status: the history entry's time.
    status_at: dt.datetime
    # shipped_at, received_at, completed_at, cancelled_at as the browser recorded them.
    stamps: dict[str, dt.datetime] = field(default_factory=dict)
    # Which carrier and service the browser's label was, as it showed them (no tracking
    # number, no label URL: those are never taken from an export).
    shipping_carrier: str | None = None
    shipping_service: str | None = None
    # What the history entry keeps of the browser's record (JSON-ready).
    history_metadata: dict[str, Any] = field(default_factory=dict)


async def insert_imported_orders(
    session: AsyncSession, orders: Sequence[ImportedOrder], *, actor: str
) -> dict[uuid.UUID, str]:
    """Insert `orders` and their `imported` history entries; their order numbers by id."""
    if not orders:
        return {}
    history = [
        {
            "id": uuid.uuid4(),
            "order_id": order.id,
            "status": OrderStatus.IMPORTED.value,
            "actor": actor,
            "notes": IMPORTED_NOTE,
            "metadata": json.dumps({"kind": IMPORTED_NOTE, **order.history_metadata}),
            "created_at": order.status_at,
        }
        for order in orders
    ]
    async with transactions.as_service(session):
        result = await session.execute(
            _unnest_insert("orders", ORDER_COLUMNS, "RETURNING id, order_number"),
            _columns(ORDER_COLUMNS, [_order_row(order) for order in orders]),
        )
        numbers = {row.id: row.order_number for row in result}
        await session.execute(
            _unnest_insert("order_status_history", HISTORY_COLUMNS),
            _columns(HISTORY_COLUMNS, history),
        )
    return numbers


# Each column and its type: a batch goes in as one array per column (`unnest`), one short
# statement whatever the batch size, instead of a VALUES list with a parameter per cell.
ORDER_COLUMNS = {
    "id": "uuid",
    "user_id": "uuid",
    "status": "text",
    "imported_status": "text",
    "device_brand": "text",
    "device_model": "text",
    "device_storage": "text",
    "device_category": "text",
    "device_condition": "text",
    "device_details": "jsonb",
    "quoted_price_usd": "numeric",
    "quoted_price_sol": "numeric",
    "quoted_price_lamports": "bigint",
    "shipping_address_id": "uuid",
    "shipping_carrier": "text",
    "shipping_service": "text",
    "created_at": "timestamptz",
    **{column: "timestamptz" for column in STAMPS.values()},
}
HISTORY_COLUMNS = {
    "id": "uuid",
    "order_id": "uuid",
    "status": "text",
    "actor": "text",
    "notes": "text",
    "metadata": "jsonb",
    "created_at": "timestamptz",
}


def _unnest_insert(table: str, columns: dict[str, str], tail: str = "") -> TextClause:
    names = ", ".join(columns)
    # jsonb travels as text (psycopg sends a list of str as text[]) and is cast per row.
    arrays = ", ".join(
        f"CAST(:{name} AS {'text' if kind == 'jsonb' else kind}[])"
        for name, kind in columns.items()
    )
    values = ", ".join(f"{n}::jsonb" if k == "jsonb" else n for n, k in columns.items())
    return text(
        f"INSERT INTO {table} ({names}) SELECT {values} FROM unnest({arrays}) AS u({names}) {tail}"  # noqa: S608 (table and column names are this module's constants; values are bound arrays)
    )


def _columns(columns: dict[str, str], rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in columns}


def _order_row(order: ImportedOrder) -> dict[str, Any]:
    stamps = {column: order.stamps.get(column) for column in STAMPS.values()}
    # The shown status's own stamp is never empty: the seller's view shows it.
    own_stamp = STAMPS.get(order.shown_status)
    if own_stamp is not None and stamps[own_stamp] is None:
        stamps[own_stamp] = order.status_at
    # Every row has the same keys: one multi-row INSERT per batch.
    return {
        "id": order.id,
        "user_id": order.user_id,
        "status": OrderStatus.IMPORTED.value,
        "imported_status": order.shown_status.value,
        "device_brand": order.device_brand,
        "device_model": order.device_model,
        "device_storage": order.device_storage,
        "device_category": order.device_category,
        "device_condition": order.device_condition,
        "device_details": json.dumps(order.device_details) if order.device_details else None,
        "quoted_price_usd": order.quoted_price_usd,
        "quoted_price_sol": order.quoted_price_sol,
        "quoted_price_lamports": sol_to_lamports(order.quoted_price_sol),
        "shipping_address_id": order.shipping_address_id,
        "shipping_carrier": order.shipping_carrier,
        "shipping_service": order.shipping_service,
        "created_at": order.created_at,
        **stamps,
    }
