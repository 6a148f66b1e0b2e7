"""A stream sends each change as it commits; a client that comes back with Last-Event-ID gets
exactly the changes it missed, in order, and none it had."""

from __future__ import annotations

from refit.models import OrderStatus
from tests.events.helpers import history_rows
from tests.events.sse import open_stream
from tests.orders.helpers import operator_move, place_order

S = OrderStatus


async def test_live_changes_then_exactly_the_missed_ones_after_a_reconnect(
    live, resources, make_user
):
    seller = await make_user()
    order = await place_order(live.http, resources, seller)
    order_id = order["id"]

    async with open_stream(live.http, order_id, headers=seller.headers) as stream:
        # No Last-Event-ID: the first event is the current status (the latest change).
        current = await stream.next_event()
        assert current.event == "status" and current.status == "pending"
        await operator_move(resources, order_id, S.PROCESSING_SHIPMENT, notes="label asked")
        seen = await stream.next_event()
    (created, moved) = await history_rows(resources, order_id)
    assert current.id == str(created.id)
    assert seen.id == str(moved.id)
    assert seen.json() == {
        "id": str(moved.id),
        "order_id": order_id,
        "from_status": "pending",
        "status": "processing_shipment",
        "actor": "operator",  # the kind only: operators' names stay internal
        "notes": "label asked",
        "created_at": seen.json()["created_at"],
    }
    assert seen.created_at == moved.created_at

    # Disconnected: three moves the client does not see.
    for status in (S.AWAITING_SHIPMENT, S.SHIPPED, S.RECEIVED):
        await operator_move(resources, order_id, status)
    missed = (await history_rows(resources, order_id))[2:]
    assert [row.status for row in missed] == ["awaiting_shipment", "shipped", "received"]

    headers = {**seller.headers, "Last-Event-ID": seen.id}
    async with open_stream(live.http, order_id, headers=headers) as stream:
        caught_up = [await stream.next_event() for _ in missed]
        # Then nothing but a heartbeat: no earlier event, none twice.
        await stream.next_comment()
    assert [e.id for e in caught_up] == [str(row.id) for row in missed]
    assert [(e.json()["from_status"], e.status) for e in caught_up] == [
        ("processing_shipment", "awaiting_shipment"),
        ("awaiting_shipment", "shipped"),
        ("shipped", "received"),
    ]
    # Live again after the catch-up.
    async with open_stream(live.http, order_id, headers=headers) as stream:
        for _ in missed:
            await stream.next_event()
        await operator_move(resources, order_id, S.INSPECTING)
        assert (await stream.next_event()).status == "inspecting"


async def test_last_event_id_in_the_query_and_an_unknown_one(live, resources, make_user):
    seller = await make_user()
    order = await place_order(live.http, resources, seller)
    await operator_move(resources, order["id"], S.PROCESSING_SHIPMENT)
    await operator_move(resources, order["id"], S.AWAITING_SHIPMENT)
    rows = await history_rows(resources, order["id"])

    # ?last_event_id= (for clients that cannot set the header) does what the header does.
    params = {"last_event_id": str(rows[0].id)}
    async with open_stream(live.http, order["id"], headers=seller.headers, params=params) as s:
        assert [(await s.next_event()).id for _ in rows[1:]] == [str(r.id) for r in rows[1:]]
        await s.next_comment()

    # An id that is not one of this order's events: the whole history, so nothing is missed.
    for unknown in ("not-an-id", "00000000-0000-0000-0000-000000000001"):
        headers = {**seller.headers, "Last-Event-ID": unknown}
        async with open_stream(live.http, order["id"], headers=headers) as s:
            assert [(await s.next_event()).id for _ in rows] == [str(r.id) for r in rows]
            await s.next_comment()
