"""Shared by the catalog, quotes and orders tests: sellers' addresses, quotes, orders, and
operator-side moves (which go through transition() directly, as the admin API will)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from refit.models import Order, OrderStatus, ShippingAddress
from refit.orders import reads
from refit.orders.schemas import OrderPage, OrderRead
from refit.orders.service import transition
from refit.resources import Resources
from refit.transactions import act_as_user

DEVICE = {
    "device_brand": "Apple",
    "device_model": "iPhone 15 Pro",
    "storage": "256GB",
    "device_condition": "good",
}


async def add_address(resources: Resources, user_id: uuid.UUID) -> uuid.UUID:
    """A saved address, written under the seller's own RLS session (the addresses API is
    another domain's)."""
    async with resources.sessionmaker() as session, session.begin():
        await act_as_user(session, user_id)
        address = ShippingAddress(
            id=uuid.uuid4(),
            user_id=user_id,
            name="Ada Seller",
            street1="500 Congress Ave",
            city="Austin",
            state="TX",
            zip="78701",
        )
        session.add(address)
    return address.id


async def quote(client: httpx.AsyncClient, seller: Any, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/quotes", json={**DEVICE, **overrides}, headers=seller.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def place_order(
    client: httpx.AsyncClient, resources: Resources, seller: Any, **device: Any
) -> dict[str, Any]:
    q = await quote(client, seller, **device)
    address_id = await add_address(resources, seller.id)
    response = await client.post(
        "/api/orders/create",
        json={"quote_id": q["quote_id"], "shipping_address_id": str(address_id)},
        headers=seller.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def operator_move(
    resources: Resources,
    order_id: str | uuid.UUID,
    to_status: OrderStatus,
    actor: str = "operator:test",
    **kwargs: Any,
) -> None:
    """An operator's or a job's move: the service role, through the one door."""
    async with resources.sessionmaker() as session, session.begin():
        await transition(session, uuid.UUID(str(order_id)), to_status, actor=actor, **kwargs)


async def page_beside_pydantics(
    resources: Resources, seller_id: uuid.UUID, size: int, cursor: str | None
) -> tuple[bytes, bytes, dict[str, Any]]:
    """A page of the seller's list as the API writes it (refit.orders.reads), the same orders
    as pydantic writes them from their ORM rows (OrderPage), and the page read back: the two
    bodies must be equal byte for byte."""
    body = await reads.list_orders_json(seller_id, limit=size, cursor=cursor)
    page = json.loads(body)
    async with resources.sessionmaker() as session:
        orders = [await session.get(Order, uuid.UUID(i["id"])) for i in page["items"]]
    model = OrderPage(
        items=[OrderRead.model_validate(o) for o in orders], next_cursor=page["next_cursor"]
    )
    return body, model.model_dump_json().encode(), page
