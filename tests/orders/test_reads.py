"""GET /api/orders (newest first, cursor pages) and GET /api/orders/{id}/tracking."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace

from refit.carriers.interface import Tracking, TrackingEvent, TrackingStatus
from refit.models import OrderStatus
from refit.orders.service import get_order
from refit.shipping import state
from tests.orders.helpers import add_address, operator_move, place_order, quote

S = OrderStatus


async def test_pages_walk_every_order_once_newest_first(client, resources, make_user):
    seller = await make_user()
    address = await add_address(resources, seller.id)
    created = []
    for _ in range(7):
        q = await quote(client, seller)
        response = await client.post(
            "/api/orders/create",
            json={"quote_id": q["quote_id"], "shipping_address_id": str(address)},
            headers=seller.headers,
        )
        created.append(response.json()["id"])

    seen, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/orders", params=params, headers=seller.headers)).json()
        seen += [o["id"] for o in page["items"]]
        assert len(page["items"]) <= 3
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # An order placed while paging appears on a fresh first page, not in this walk.
        if len(seen) == 3:
            await place_order(client, resources, seller)
    assert seen == list(reversed(created))
    first = (await client.get("/api/orders", headers=seller.headers)).json()
    assert len(first["items"]) == 8 and first["next_cursor"] is None
    assert "status_history" not in first["items"][0]
    assert first["items"][0]["quoted_price_usd"] == "442.00"


async def test_bad_paging_parameters(client, make_user):
    seller = await make_user()
    for params, code in (
        ({"cursor": "bm90LWEtY3Vyc29y"}, "invalid_cursor"),
        ({"cursor": "%%%"}, "invalid_cursor"),
        ({"limit": 0}, "validation_error"),
        ({"limit": 101}, "validation_error"),
    ):
        response = await client.get("/api/orders", params=params, headers=seller.headers)
        assert response.status_code in (400, 422)
        assert response.json()["code"] == code


async def test_tracking_from_the_order_and_its_events(client, resources, make_user):
    seller = await make_user()
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    empty = (await client.get(f"/api/orders/{order_id}/tracking", headers=seller.headers)).json()
    assert empty == {
        "order_status": "pending",
        "carrier": None,
        "tracking_number": None,
        "status": "UNKNOWN",
        "eta": None,
        "events": [],
    }
    await operator_move(resources, order_id, S.PROCESSING_SHIPMENT)
    await operator_move(resources, order_id, S.AWAITING_SHIPMENT)
    t0 = dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC)
    eta = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
    label_created = TrackingEvent(TrackingStatus.PRE_TRANSIT, "Label created", t0)
    in_transit = TrackingEvent(
        TrackingStatus.TRANSIT,
        "In transit",
        t0 + dt.timedelta(hours=5),
        location="Austin, TX",
        substatus="package_accepted",
    )
    track = Tracking("USPS", "9400100000000000000000", TrackingStatus.TRANSIT, eta, [])
    async with resources.sessionmaker() as session, session.begin():
        order = await get_order(session, order_id, for_update=True)
        order.shipping_carrier, order.tracking_number = "USPS", "9400100000000000000000"
        # Written out of order and twice: the writer keeps each event once.
        first = replace(track, events=[in_transit], eta=eta)
        again = replace(track, events=[label_created, in_transit], eta=None)
        assert len(await state.record_tracking(session, order_id, first, source="track")) == 1
        added = await state.record_tracking(session, order_id, again, source="track")
        assert [e.status for e in added] == [TrackingStatus.PRE_TRANSIT]
    body = (await client.get(f"/api/orders/{order_id}/tracking", headers=seller.headers)).json()
    assert body["carrier"] == "USPS" and body["tracking_number"] == "9400100000000000000000"
    assert [e["status"] for e in body["events"]] == ["PRE_TRANSIT", "TRANSIT"]
    assert body["events"][1]["location"] == "Austin, TX"
    assert body["events"][1]["substatus"] == "package_accepted"
    assert body["status"] == "TRANSIT"
    # The newest estimate the carrier gave: the later write came without one.
    assert body["eta"] == "2026-11-23T20:00:00Z"
    assert body["order_status"] == "awaiting_shipment"
