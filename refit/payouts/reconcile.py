"""The payouts table against the chain: every finalized payout's transfer found with its
amount and recipient, nothing landed that the table does not record; and from the chain's
side, every order that reached inspection with no payout row looked up by its derived
reference key (a payout row lost with a restore, the transfer on chain). Read-only on both."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Finalized
from solders.pubkey import Pubkey
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from refit.models import Order, OrderStatus
from refit.models.payout import Payout, PayoutStatus
from refit.payouts.chain import find_transfer, order_reference
from refit.transactions import service_transaction


class Kind(StrEnum):
    MISSING_ON_CHAIN = "missing_on_chain"  # finalized here, the chain has no such transfer
    AMOUNT_DIFFERS = "amount_differs"
    RECIPIENT_DIFFERS = "recipient_differs"
    LANDED_NOT_RECORDED = "landed_not_recorded"  # the chain has it; the table is not finalized
    UNRECORDED_TRANSFER = "unrecorded_transfer"  # a transfer by the reference the table lacks
    PAID_BUT_UNRECORDED = "paid_but_unrecorded"  # a transfer for an order with no payout row


# From inspection on, an order may have been paid (it is paid from `inspecting` or
# `offer_pending`, and then completes): these are looked up on chain when no payout row says so.
MAY_BE_PAID = (
    OrderStatus.INSPECTING,
    OrderStatus.OFFER_PENDING,
    OrderStatus.RETURNING,
    OrderStatus.COMPLETED,
)


@dataclass(frozen=True)
class Difference:
    order_id: uuid.UUID
    kind: Kind
    detail: str
    signature: str | None


@dataclass(frozen=True)
class _Row:
    order_id: uuid.UUID
    status: PayoutStatus
    lamports: int | None
    recipient: str
    reference: str
    signature: str | None


async def _rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[_Row]:
    async with service_transaction(sessionmaker=sessionmaker) as session:
        payouts = (await session.scalars(select(Payout).order_by(Payout.created_at))).all()
        return [
            _Row(p.order_id, p.status, p.lamports, p.recipient, p.reference, p.signature)
            for p in payouts
        ]


async def reconcile(
    sessionmaker: async_sessionmaker[AsyncSession], rpc: AsyncClient
) -> list[Difference]:
    """Every difference between the payouts table and the finalized chain. The rows are read
    first and the session closed: no chain call holds a connection."""
    differences: list[Difference] = []
    for row in await _rows(sessionmaker):
        differences.extend(await _check(rpc, row))
    for order_id in await _orders_without_payout(sessionmaker):
        differences.extend(await _check_unrecorded(rpc, order_id))
    return differences


async def _orders_without_payout(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> list[uuid.UUID]:
    async with service_transaction(sessionmaker=sessionmaker) as session:
        ids = await session.scalars(
            select(Order.id)
            .where(
                Order.status.in_(MAY_BE_PAID),
                ~exists().where(Payout.order_id == Order.id),
            )
            .order_by(Order.created_at, Order.id)
        )
        return list(ids.all())


async def _check_unrecorded(rpc: AsyncClient, order_id: uuid.UUID) -> list[Difference]:
    """A transfer carrying the order's reference key, finalized without error, when the table
    has no payout for it: the seller was paid and nothing here says so."""
    return [
        Difference(
            order_id,
            Kind.PAID_BUT_UNRECORDED,
            "paid but unrecorded: a transfer carries this order's reference key, and the "
            "table has no payout for the order",
            signature,
        )
        for signature in await _landed(rpc, str(order_reference(order_id)))
    ]


async def _landed(rpc: AsyncClient, reference: str) -> list[str]:
    """Finalized transactions without error carrying the reference key, oldest first."""
    found = (
        await rpc.get_signatures_for_address(Pubkey.from_string(reference), commitment=Finalized)
    ).value
    return [str(s.signature) for s in reversed(found) if s.err is None]


async def _check(rpc: AsyncClient, row: _Row) -> list[Difference]:
    out: list[Difference] = []
    landed = await _landed(rpc, row.reference)
    if row.status is PayoutStatus.FINALIZED:
        assert row.signature is not None
        out.extend(await _check_transfer(rpc, row, row.signature))
        recorded = {row.signature}
    else:
        recorded = set()
        if landed:
            out.append(
                Difference(
                    row.order_id,
                    Kind.LANDED_NOT_RECORDED,
                    f"the table has it {row.status.value}; the chain has it finalized",
                    landed[0],
                )
            )
            recorded = {landed[0]}
    for signature in landed:
        if signature not in recorded:
            out.append(
                Difference(
                    row.order_id,
                    Kind.UNRECORDED_TRANSFER,
                    "a transfer by this payout's reference key the table does not record",
                    signature,
                )
            )
    return out


async def _check_transfer(rpc: AsyncClient, row: _Row, signature: str) -> list[Difference]:
    found = await find_transfer(rpc, signature)
    if found is None:
        return [
            Difference(
                row.order_id,
                Kind.MISSING_ON_CHAIN,
                "finalized in the table; no successful transfer with this signature on chain",
                signature,
            )
        ]
    if found.recipient != row.recipient:
        return [
            Difference(
                row.order_id,
                Kind.RECIPIENT_DIFFERS,
                f"the transfer pays {found.recipient}, not {row.recipient}",
                signature,
            )
        ]
    if found.lamports != row.lamports:
        return [
            Difference(
                row.order_id,
                Kind.AMOUNT_DIFFERS,
                f"the table has {row.lamports} lamports; the chain moved {found.lamports}",
                signature,
            )
        ]
    return []
