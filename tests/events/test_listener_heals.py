"""The process's LISTEN connection dies (here: terminated by PostgreSQL) and comes back by
itself; a change made after its death still reaches an open stream, and so do later ones on
the new connection."""

from __future__ import annotations

from sqlalchemy import text

from refit.models import OrderStatus
from tests.events.helpers import history_rows
from tests.events.sse import open_stream
from tests.listen_helpers import listener_pids, one_listener
from tests.orders.helpers import operator_move, place_order

S = OrderStatus


async def test_a_killed_listener_connection_is_replaced_and_nothing_is_missed(
    live, resources, make_user
):
    seller = await make_user()
    order = await place_order(live.http, resources, seller)
    order_id = order["id"]
    before = await one_listener(resources)

    async with open_stream(live.http, order_id, headers=seller.headers) as stream:
        assert (await stream.next_event()).status == "pending"
        await operator_move(resources, order_id, S.PROCESSING_SHIPMENT)
        assert (await stream.next_event()).status == "processing_shipment"

        async with resources.sessionmaker() as session:
            killed = await session.scalar(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": before}
            )
        assert killed
        # At once, without waiting for the new connection: its NOTIFY may reach nobody.
        await operator_move(resources, order_id, S.AWAITING_SHIPMENT)
        healed = await stream.next_event()
        assert healed.status == "awaiting_shipment"

        after = await one_listener(resources, other_than=before)
        assert before not in await listener_pids(resources)
        await operator_move(resources, order_id, S.SHIPPED)
        assert (await stream.next_event()).status == "shipped"
        # Each change once: a heartbeat follows, no repeat.
        await stream.next_comment()

    rows = await history_rows(resources, order_id)
    assert [r.status for r in rows] == [
        "pending",
        "processing_shipment",
        "awaiting_shipment",
        "shipped",
    ]
    assert healed.id == str(rows[2].id)
    assert after != before
