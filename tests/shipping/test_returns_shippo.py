"""Insurance and signature as Shippo is asked for them (the local Shippo-shaped server), both
ways; and a label home whose purchase reply was lost is found, never bought twice."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select, update

from refit.models import Order, OrderStatus
from refit.models.shipping import ReturnShipment
from tests.shipping.helpers import make_due, order_row, quote


async def _priced(resources, order, quoted: str, **values) -> None:
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == order.id)
            .values(quoted_price_usd=Decimal(quoted), **values)
        )


async def _declined(client, make_user, make_order, resources, *, quoted: str = "412.50"):
    seller = await make_user()
    order = await make_order(seller)
    await _priced(
        resources,
        order,
        quoted,
        status=OrderStatus.OFFER_PENDING,
        final_price_usd=Decimal("250.00"),
        offer_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=14),
    )
    declined = await client.post(f"/api/orders/{order.id}/offer/decline", headers=seller.headers)
    assert declined.status_code == 200, declined.text
    return order


async def _home(resources, order_id) -> ReturnShipment:
    async with resources.sessionmaker() as session:
        row = await session.scalar(
            select(ReturnShipment).where(ReturnShipment.order_id == order_id)
        )
    assert row is not None
    return row


def _shipments(shippo_server) -> list[dict]:
    return [body for *_, body in shippo_server.calls("POST", "/shipments")]


async def test_inbound_labels_are_insured_above_the_threshold_and_signed_above_the_next(
    client, make_user, make_order, resources, shippo_settings, shippo_server
):
    seller = await make_user()
    asked = {}
    for quoted in ("80.00", "412.50", "650.00"):
        order = await make_order(seller)
        await _priced(resources, order, quoted)
        await quote(client, seller, order.id)
        asked[quoted] = _shipments(shippo_server)[-1]
    # Below insure_above_usd ($100): postage alone, no extras asked for.
    assert "extra" not in asked["80.00"]
    assert asked["412.50"]["extra"] == {
        "insurance": {"amount": "412.50", "currency": "USD", "content": "Used phone"}
    }
    # Above signature_above_usd ($500): a signature on delivery too.
    assert asked["650.00"]["extra"] == {
        "insurance": {"amount": "650.00", "currency": "USD", "content": "Used phone"},
        "signature_confirmation": "STANDARD",
    }
    assert asked["650.00"]["address_to"]["zip"] == "94117"  # to the warehouse


async def test_the_label_home_is_asked_for_insured_from_the_warehouse(
    client, make_user, make_order, resources, run_jobs, shippo_settings, shippo_server
):
    order = await _declined(client, make_user, make_order, resources, quoted="80.00")
    await run_jobs()
    [asked] = _shipments(shippo_server)
    # Home is always insured, even below insure_above_usd, for the higher of the quote and
    # the offer (here the $250 offer); no signature below signature_above_usd.
    assert asked["extra"] == {
        "insurance": {"amount": "250.00", "currency": "USD", "content": "Used phone"}
    }
    assert asked["address_from"]["zip"] == "94117" and asked["address_to"]["zip"] == "94043"
    assert asked["metadata"] == f"return:{order.id}"
    assert "is_return" not in asked["extra"]  # an ordinary shipment: see shippo.shipment_extra
    [bought] = shippo_server.labels_bought()
    assert bought["metadata"] == f"return:{order.id}"
    home = await _home(resources, order.id)
    assert (home.status, home.transaction_id) == ("purchased", bought["object_id"])
    assert home.tracking_number == bought["tracking_number"]
    assert home.insured_usd == Decimal("250.00") and home.cost is not None


async def test_a_lost_reply_on_the_label_home_is_found_not_bought_again(
    client, make_user, make_order, resources, run_jobs, settings, shippo_settings, shippo_server
):
    settings.shippo_timeout_seconds = 1
    shippo_server.add_transactions(30)  # other labels on the account meanwhile
    shippo_server.hold_next_transaction()
    order = await _declined(client, make_user, make_order, resources)
    await run_jobs()
    shippo_server.release()
    home = await _home(resources, order.id)
    assert (home.status, home.transaction_id) == ("started", None)
    assert len(shippo_server.labels_bought()) == 1  # the carrier did create it

    await make_due(resources)
    await run_jobs()

    assert len(shippo_server.calls("POST", "/transactions")) == 1
    [bought] = shippo_server.labels_bought()
    home = await _home(resources, order.id)
    assert (home.status, home.transaction_id) == ("purchased", bought["object_id"])
    assert home.label_file_key == f"returns/{order.id}/{bought['object_id']}.pdf"
    assert (await order_row(resources, order.id)).status is OrderStatus.RETURNING
    # It looked for the lost one by listing the window around the try.
    assert shippo_server.state.list_queries
