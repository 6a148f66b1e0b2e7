"""Writing checked exports: sellers, their addresses, their orders, a batch at a time.

Orders become history (refit/orders/imported.py): status `imported`, the browser's status
kept for display. Tracking numbers (of either leg) and payout signatures are never taken from
an export: they are dropped and counted in the summary. A seller's saved addresses keep their
cap (MAX_ADDRESSES_PER_USER): addresses beyond it are left out, by browser id, and not
claimed, so a later import brings them once the seller has room.

Idempotent on the browser's own ids: each address and order first claims its key
(seller, kind, browser id) in `localstorage_imports` (`ON CONFLICT DO NOTHING`), and only
what this batch claimed is written, in the same transaction. A second run, or a run racing
this one on the same file, finds the claims and skips. Every step is one multi-row
statement, so a batch costs a handful of round trips however many rows it holds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, cast

from sqlalchemy import Table, column, delete, func, insert, select, table, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from refit.addresses.service import MAX_ADDRESSES_PER_USER
from refit.localstorage.schemas import ExportAddress, ExportDocument, ExportOrder, backend_status
from refit.localstorage.validation import CheckedExport
from refit.models.address import ShippingAddress
from refit.models.user import User
from refit.orders.imported import ImportedOrder, insert_imported_orders

CLI_ACTOR = "system:import-localstorage"

# The claims table (migration 0013). Not an ORM model: only this module reads or writes it.
claims = table(
    "localstorage_imports",
    column("user_id"),
    column("kind"),
    column("browser_id"),
    column("record_id"),
    column("source"),
)


_CLAIM = text(
    """
    INSERT INTO localstorage_imports (user_id, kind, browser_id, record_id, source)
    SELECT * FROM unnest(CAST(:user_ids AS uuid[]), CAST(:kinds AS text[]),
                         CAST(:browser_ids AS text[]), CAST(:record_ids AS uuid[]),
                         CAST(:sources AS text[]))
    ON CONFLICT DO NOTHING
    RETURNING user_id, kind, browser_id
    """
)


@dataclass
class ImportSummary:
    users_created: int = 0
    addresses_created: int = 0
    orders_created: int = 0
    addresses_skipped: int = 0
    orders_skipped: int = 0
    # Documents refused whole (a problem anywhere in them).
    refused: int = 0
    batches: int = 0
    # Never taken from an export (imported orders are history): how many were dropped.
    tracking_numbers_dropped: int = 0
    payment_signatures_dropped: int = 0
    # Addresses beyond the seller's cap, by the browser's id: not imported.
    addresses_left_out: list[str] = field(default_factory=list)

    def add(self, other: ImportSummary) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Part:
    """Some of one document's records: a batch holds parts of one or more documents."""

    document: ExportDocument
    source: str
    addresses: list[ExportAddress] = field(default_factory=list)
    orders: list[ExportOrder] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.addresses) + len(self.orders)


def batches(checked: Iterable[CheckedExport], batch_size: int) -> Iterator[list[Part]]:
    """Accepted documents cut into batches of about `batch_size` records. A document larger
    than a batch is split; its addresses go first, so later parts find them claimed."""
    batch: list[Part] = []
    room = batch_size
    for export in checked:
        if export.document is None:
            continue
        doc = export.document
        records: list[ExportAddress | ExportOrder] = [*doc.addresses, *doc.orders]
        if not records:
            # A wallet with nothing saved still becomes a seller.
            batch.append(Part(doc, export.source))
            continue
        while records:
            taken, records = records[:room], records[room:]
            batch.append(
                Part(
                    doc,
                    export.source,
                    addresses=[r for r in taken if isinstance(r, ExportAddress)],
                    orders=[r for r in taken if isinstance(r, ExportOrder)],
                )
            )
            room -= len(taken)
            if room == 0:
                yield batch
                batch, room = [], batch_size
    if batch:
        yield batch


async def import_batch(
    session: AsyncSession, parts: list[Part], *, actor: str = CLI_ACTOR
) -> ImportSummary:
    """Write one batch in the caller's transaction (a service session: the caller checked
    whose data it is). Flushes, never commits."""
    summary = ImportSummary(batches=1)
    users = await _users(session, {p.document.wallet_address for p in parts}, summary)

    wanted: dict[tuple[uuid.UUID, str, str], tuple[Part, Any]] = {}
    for part in parts:
        user_id = users[part.document.wallet_address]
        for address in part.addresses:
            wanted.setdefault((user_id, "address", address.id), (part, address))
        for order in part.orders:
            wanted.setdefault((user_id, "order", order.id), (part, order))
    claimed = await _claim(session, wanted)
    summary.addresses_skipped = sum(1 for p in parts for _ in p.addresses)
    summary.orders_skipped = sum(1 for p in parts for _ in p.orders)

    new_addresses = [(k, v) for k, v in claimed.items() if k[1] == "address"]
    left_out = await _insert_addresses(session, new_addresses)
    summary.addresses_left_out = [browser_id for _, _, browser_id in left_out]
    summary.addresses_created = len(new_addresses) - len(left_out)
    summary.addresses_skipped -= len(new_addresses)

    new_orders = [(k, v) for k, v in claimed.items() if k[1] == "order"]
    address_ids = await _address_ids(session, [(k[0], v[2]) for k, v in new_orders])
    await insert_imported_orders(
        session,
        [
            _imported_order(record_id, user_id, part, order, address_ids)
            for (user_id, _, _), (record_id, part, order) in new_orders
        ],
        actor=actor,
    )
    summary.orders_created = len(new_orders)
    summary.orders_skipped -= len(new_orders)
    for _, (_, _, order) in new_orders:
        summary.tracking_numbers_dropped += bool(order.label and order.label.tracking_number)
        summary.payment_signatures_dropped += bool(order.payment_tx_signature)
    return summary


async def _users(
    session: AsyncSession, wallets: set[str], summary: ImportSummary
) -> dict[str, uuid.UUID]:
    """The sellers of these wallets, created when new (as a first sign-in would)."""
    created = await session.scalars(
        pg_insert(User)
        .values([{"wallet_address": w} for w in sorted(wallets)])
        .on_conflict_do_nothing(index_elements=[User.wallet_address])
        .returning(User.id)
    )
    summary.users_created = len(created.all())
    rows = await session.execute(
        select(User.wallet_address, User.id).where(User.wallet_address.in_(wallets))
    )
    return {wallet: user_id for wallet, user_id in rows}


async def _claim(
    session: AsyncSession, wanted: dict[tuple[uuid.UUID, str, str], tuple[Part, Any]]
) -> dict[tuple[uuid.UUID, str, str], tuple[uuid.UUID, Part, Any]]:
    """The keys this batch claimed (the others were imported before), with the id each new
    row gets."""
    if not wanted:
        return {}
    ids = {key: uuid.uuid4() for key in wanted}
    # One array per column: one short statement however many keys (a VALUES list would
    # carry five parameters a row).
    result = await session.execute(
        _CLAIM,
        {
            "user_ids": [user_id for user_id, _, _ in wanted],
            "kinds": [kind for _, kind, _ in wanted],
            "browser_ids": [browser_id for _, _, browser_id in wanted],
            "record_ids": list(ids.values()),
            "sources": [part.source for part, _ in wanted.values()],
        },
    )
    got = {(row.user_id, row.kind, row.browser_id) for row in result}
    return {key: (ids[key], *wanted[key]) for key in wanted if key in got}


async def _insert_addresses(
    session: AsyncSession,
    new: list[tuple[tuple[uuid.UUID, str, str], tuple[uuid.UUID, Part, Any]]],
) -> list[tuple[uuid.UUID, str, str]]:
    """Insert the claimed addresses up to each seller's cap; the keys of those left out (their
    claims withdrawn)."""
    if not new:
        return []
    users = {user_id for (user_id, _, _), _ in new}
    # The addresses domain's per-seller lock (addresses/service.py), in one order so two
    # imports never deadlock: a seller making an address default, or another browser's
    # import, waits, and the one-default check below stays true until commit.
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended('addresses:' || u::text, 0)) "
            "FROM unnest(CAST(:users AS uuid[])) AS u ORDER BY u"
        ),
        {"users": sorted(users)},
    )
    # One default per seller (a unique index): a seller who already has one keeps it.
    has_default = set(
        await session.scalars(
            select(ShippingAddress.user_id).where(
                ShippingAddress.user_id.in_(users), ShippingAddress.is_default
            )
        )
    )
    # The cap, counted under the lock: an import and the addresses API both wait for it.
    room = {
        user_id: MAX_ADDRESSES_PER_USER - count
        for user_id, count in await session.execute(
            select(ShippingAddress.user_id, func.count())
            .where(ShippingAddress.user_id.in_(users))
            .group_by(ShippingAddress.user_id)
        )
    }
    left_out = []
    rows = []
    for key, (record_id, _, address) in new:
        user_id = key[0]
        if room.setdefault(user_id, MAX_ADDRESSES_PER_USER) <= 0:
            left_out.append(key)
            continue
        room[user_id] -= 1
        is_default = address.is_default and user_id not in has_default
        if is_default:
            has_default.add(user_id)
        rows.append(
            {
                "id": record_id,
                "user_id": user_id,
                **address.model_dump(
                    include={"name", "street1", "street2", "city", "state", "zip", "country"}
                ),
                "phone": address.phone,
                "is_default": is_default,
                **({"created_at": address.created_at} if address.created_at else {}),
            }
        )
    # Rows with and without created_at: two statements at most, each multi-row.
    for with_created in (True, False):
        same = [r for r in rows if ("created_at" in r) is with_created]
        if same:
            await session.execute(insert(cast(Table, ShippingAddress.__table__)), same)
    for user_id, kind, browser_id in left_out:
        await session.execute(
            delete(claims).where(
                claims.c.user_id == user_id,
                claims.c.kind == kind,
                claims.c.browser_id == browser_id,
            )
        )
    return left_out


async def _address_ids(
    session: AsyncSession, orders: list[tuple[uuid.UUID, ExportOrder]]
) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    """The saved addresses the orders point at, by (seller, browser id): imported in this
    batch or an earlier one, and not deleted by the seller since."""
    refs = {(user_id, o.address_id) for user_id, o in orders if o.address_id is not None}
    if not refs:
        return {}
    rows = await session.execute(
        select(claims.c.user_id, claims.c.browser_id, claims.c.record_id)
        .join(ShippingAddress.__table__, ShippingAddress.id == claims.c.record_id)
        .where(
            claims.c.kind == "address",
            claims.c.user_id.in_({u for u, _ in refs}),
            claims.c.browser_id.in_({b for _, b in refs}),
        )
    )
    return {(r.user_id, r.browser_id): r.record_id for r in rows}


def _imported_order(
    record_id: uuid.UUID,
    user_id: uuid.UUID,
    part: Part,
    order: ExportOrder,
    address_ids: dict[tuple[uuid.UUID, str], uuid.UUID],
) -> ImportedOrder:
    stamps = {
        name: value
        for name in ("shipped_at", "received_at", "completed_at", "cancelled_at")
        if (value := getattr(order, name)) is not None
    }
    label = order.label
    return ImportedOrder(
        id=record_id,
        user_id=user_id,
        shown_status=backend_status(order.status),
        device_brand=order.device.brand,
        device_model=order.device.model,
        device_storage=order.device.storage,
        device_category=order.device.category.value if order.device.category else None,
        device_condition=order.device.condition,
        device_details=order.device.details,
        quoted_price_usd=order.quote.price_usd,
        quoted_price_sol=order.quote.price_sol,
        shipping_address_id=(
            address_ids.get((user_id, order.address_id)) if order.address_id else None
        ),
        created_at=order.created_at,
        status_at=_status_at(order),
        stamps=stamps,
        shipping_carrier=label.carrier if label else None,
        shipping_service=label.service if label else None,
        history_metadata={
            "source": part.source,
            "browser_order_id": order.id,
            "browser_order_number": order.order_number,
            "browser_status": order.status,
            "exported_at": part.document.exported_at.isoformat(),
            # What the seller saw, for display; never the tracking number, the label's URL
            # or anything else of the label's (its carrier's raw answer), nor a signature.
            "browser_record": order.model_dump(
                mode="json",
                include={
                    "created_at": True,
                    "updated_at": True,
                    "quote": True,
                    "label": {"carrier", "service", "cost_usd", "purchased_at"},
                    "history": True,
                },
                exclude_none=True,
            ),
        },
    )


def _status_at(order: ExportOrder) -> dt.datetime:
    """When the order entered its status, as the browser knew it: its newest history entry,
    else its last update, else its creation."""
    newest = max((change.at for change in order.history), default=None)
    # A browser's clock ahead of ours must not put this entry after the order's next move.
    return min(newest or order.updated_at or order.created_at, dt.datetime.now(dt.UTC))
