"""Going on with an imported order that was still open ("continue"): a quote the server prices
now for the same device and condition (the quotes service) and an ordinary order from it
(`orders.service.create_order`), the imported one linked to it. It lives here, with the rest of
the move off browser storage, because it uses both the quotes and the orders domains: the
orders core imports no other domain."""

from __future__ import annotations

import uuid

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
from refit.errors import Conflict, Unprocessable
from refit.models.order import Order, OrderStatus
from refit.orders.imported import CONTINUABLE
from refit.orders.schemas import OrderContinue, OrderCreate
from refit.orders.service import create_order, get_order
from refit.quotes.schemas import QuoteCreate
from refit.quotes.service import create_quote
from refit.resources import Resources

S = OrderStatus


async def continue_imported(
    session: AsyncSession,
    resources: Resources,
    user_id: uuid.UUID,
    order_id: uuid.UUID,
    data: OrderContinue,
) -> Order:
    """A new order for an imported one that was still open, made as any order is: a quote the
    server prices (same device and condition; nothing else of the export is carried) and
    `create_order()` from it. The imported order is linked to it, once: a second continue is
    a 409 `already_continued` naming the order the first made."""
    # Under the seller's session: another seller's order is a 404, as an unknown one.
    imported = await get_order(session, order_id)
    _require_continuable(imported)
    address_id = data.shipping_address_id or imported.shipping_address_id
    if address_id is None:
        raise Unprocessable(
            "The imported order has no saved address; give shipping_address_id",
            code="address_required",
        )
    try:
        wanted = QuoteCreate(
            device_brand=imported.device_brand,
            device_model=imported.device_model,
            storage=imported.device_storage,
            device_condition=imported.device_condition,
        )
    except ValidationError:
        # The browser's words for the device are longer than any catalog entry's.
        raise _not_quotable(imported) from None
    quote = await create_quote(session, resources, user_id, wanted)
    # Locked and re-read: of two continues at once, the second waits here and finds the first.
    imported = await get_order(session, order_id, for_update=True)
    _require_continuable(imported)
    order = (
        await create_order(
            session, user_id, OrderCreate(quote_id=quote.id, shipping_address_id=address_id)
        )
    ).order
    async with transactions.as_service(session):
        imported.continued_as_id = order.id
        await session.flush()
    return order


def _require_continuable(order: Order) -> None:
    if order.status is not S.IMPORTED or order.imported_status not in CONTINUABLE:
        shown = order.imported_status or order.status
        raise Conflict(
            f"Order {order.order_number} is not an open imported order ({shown.value}); "
            "only those are continued",
            code="not_continuable",
            extra={"current_status": order.status.value},
        )
    if order.continued_as_id is not None:
        raise Conflict(
            f"Order {order.order_number} was continued already",
            code="already_continued",
            extra={"continued_as_id": str(order.continued_as_id)},
        )


def _not_quotable(order: Order) -> Unprocessable:
    return Unprocessable(
        f"No catalog entry for {order.device_brand} {order.device_model}; ask for a quote",
        code="unknown_device",
    )
