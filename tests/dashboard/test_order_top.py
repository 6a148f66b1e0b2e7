"""The top of the order page says what the order waits for and who acts, names the price
right (an offer the seller has not answered was never paid), and shows the carrier's ETA only
while the parcel is on its way."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from sqlalchemy import text

from refit.models import OrderStatus as S
from tests.dashboard.helpers import signed_in_operator
from tests.dashboard.returns_setup import offer_pending
from tests.inspection.helpers import shipped_order
from tests.orders.helpers import operator_move
from tests.payouts.conftest import as_quoted_order, pay, paying  # noqa: F401


def _part(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:p|dd)>', html, re.S)
    assert found, element_id
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


async def _event(resources, order_id: str, status: str, minutes_ago: int) -> None:
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO shipping_events (order_id, leg, event_type, status, occurred_at, eta)"
                " VALUES (:o, 'inbound', 'track_updated', :s,"
                " now() - make_interval(mins => :m), now() + interval '2 days')"
            ),
            {"o": order_id, "s": status, "m": minutes_ago},
        )


async def test_the_eta_shows_while_the_parcel_moves_and_not_once_delivered(
    client, resources, make_user
):
    await signed_in_operator(resources, client, "inspector")
    order_id = await shipped_order(client, resources, await make_user())
    await _event(resources, order_id, "TRANSIT", 60)
    await operator_move(resources, order_id, S.SHIPPED, actor="system:test")
    moving = (await client.get(f"/admin/orders/{order_id}")).text
    assert "ETA" in _part(moving, "order-tracking")
    assert _part(moving, "order-next") == "Next: The warehouse receives the parcel when it arrives."

    await _event(resources, order_id, "DELIVERED", 1)
    await operator_move(resources, order_id, S.RECEIVED, actor="system:test")
    arrived = (await client.get(f"/admin/orders/{order_id}")).text
    assert _part(arrived, "order-tracking") == "Delivered"
    assert "ETA" not in arrived


async def test_an_unanswered_offer_is_not_called_paid(client, resources, make_user):
    await signed_in_operator(resources, client, "inspector")
    order = await offer_pending(client, resources, make_user)
    page = (await client.get(f"/admin/orders/{order.id}")).text
    assert "Price paid" not in page
    assert "Revised offer (not answered)" in page and "$300.00" in page
    assert _part(page, "order-next") == "Next: The seller accepts or declines the revised offer."


async def test_a_payout_over_the_cap_says_a_second_admin_must_act(
    client,
    resources,
    make_user,
    paying,  # noqa: F811
    settings,
):
    await signed_in_operator(resources, client, "admin")
    settings.payout_max_usd = Decimal("100")
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    page = (await client.get(f"/admin/orders/{uuid.UUID(order_id)}")).text
    assert "second admin" in _part(page, "order-next").lower()
    assert "Price paid" not in page
