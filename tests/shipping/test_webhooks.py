"""Shippo webhooks against the local Shippo-shaped server: verified, kept once, handled by the
job that re-reads the track from the carrier and moves the order forward only."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text, update

from refit.carriers.shippo.wire import sign
from refit.models import Order, OrderStatus
from refit.models.shipping import ShippingEvent, WebhookInbox
from refit.orders import follow_ups
from refit.settings import DEV_WEBHOOK_TOKEN
from tests.shipping.helpers import history, label_jobs, order_row

URL = f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}"
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
STEPS = [
    ("PRE_TRANSIT", (T0).isoformat()),
    ("TRANSIT", (T0 + dt.timedelta(hours=5)).isoformat()),
    ("DELIVERED", (T0 + dt.timedelta(days=2)).isoformat()),
]


def track_updated(number: str, upto: str, *, metadata: str | None = None) -> dict:
    """Shippo's track_updated body (REFERENCE 1.5-1.6) with history up to `upto`."""
    shown = STEPS[: [s for s, _ in STEPS].index(upto) + 1]
    history = [
        {
            "object_id": f"ts_{number}_{status}",
            "status": status,
            "status_details": f"Carrier says {status}",
            "status_date": at,
            "substatus": {"code": "information_received", "text": "", "action_required": False},
            "location": {"city": "Oakland", "state": "CA", "zip": "94607", "country": "US"},
        }
        for status, at in shown
    ]
    return {
        "event": "track_updated",
        "test": True,
        "data": {
            "carrier": "usps",
            "tracking_number": number,
            "eta": (T0 + dt.timedelta(days=2)).isoformat(),
            "metadata": metadata,
            "address_to": {"city": "San Francisco", "state": "CA", "zip": "94117"},
            "tracking_status": history[-1],
            "tracking_history": history,
        },
    }


@pytest.fixture
async def shipped_order(make_user, resources, shippo_settings, shippo_server):
    """An order whose label is bought (awaiting_shipment), its track known to the carrier.
    Written straight into the tables: how it got there is the label job's tests' concern."""

    async def make(track_upto: str = "DELIVERED"):
        seller = await make_user()
        number = f"9400{uuid.uuid4().int % 10**18:018d}"
        async with resources.sessionmaker() as session, session.begin():
            order = Order(
                user_id=seller.id,
                status=OrderStatus.AWAITING_SHIPMENT,
                device_brand="Apple",
                device_model="iPhone 13",
                device_condition="good",
                quoted_price_usd=Decimal("412.50"),
                quoted_price_sol=Decimal("2.7500"),
                tracking_number=number,
                shipping_carrier="USPS",
            )
            session.add(order)
        known = [s for s, _ in STEPS].index(track_upto) + 1
        shippo_server.state.tracks[number] = STEPS[:known]
        return order, number

    return make


async def _events(resources, order_id) -> list[tuple[str, dt.datetime]]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(ShippingEvent.status, ShippingEvent.occurred_at)
            .where(ShippingEvent.order_id == order_id)
            .order_by(ShippingEvent.occurred_at)
        )
        return [(s.value, at) for s, at in rows.all()]


async def _count(resources, sql: str) -> int:
    async with resources.sessionmaker() as session:
        return int(await session.scalar(text(sql)) or 0)


async def test_wrong_or_missing_token_changes_nothing(client, shipped_order, resources):
    order, number = await shipped_order()
    body = track_updated(number, "DELIVERED")
    for url in (
        "/api/webhooks/shippo",
        "/api/webhooks/shippo?token=",
        "/api/webhooks/shippo?token=wrong",
        f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}x",
    ):
        response = await client.post(url, json=body)
        assert response.status_code == 401, url
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "webhook_unauthorized"
    assert await _count(resources, "SELECT count(*) FROM webhook_inbox") == 0
    assert await _count(resources, "SELECT count(*) FROM procrastinate_jobs") == 0
    assert (await order_row(resources, order.id)).status is OrderStatus.AWAITING_SHIPMENT


async def test_hmac_signature_is_checked_when_a_secret_is_set(client, shipped_order, resources):
    resources.settings.shippo_webhook_hmac_secret = "s3cret-from-shippo"
    _, number = await shipped_order()
    raw = json.dumps(track_updated(number, "TRANSIT")).encode()
    now = int(time.time())
    good = sign("s3cret-from-shippo", now, raw)
    refused = [
        {},
        {"Shippo-Auth-Signature": f"t={now},v1={'0' * 64}"},
        {"Shippo-Auth-Signature": f"t={now},v1={sign('other', now, raw)}"},
        # A replay: right signature, but made ten minutes ago.
        {"Shippo-Auth-Signature": f"t={now - 600},v1={sign('s3cret-from-shippo', now - 600, raw)}"},
        {"Shippo-Auth-Signature": "garbage"},
    ]
    for headers in refused:
        response = await client.post(
            URL, content=raw, headers={**headers, "Content-Type": "application/json"}
        )
        assert response.status_code == 401, headers
    assert await _count(resources, "SELECT count(*) FROM webhook_inbox") == 0
    response = await client.post(
        URL,
        content=raw,
        headers={"Shippo-Auth-Signature": f"t={now},v1={good}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200 and response.json() == {"status": "accepted"}
    assert await _count(resources, "SELECT count(*) FROM webhook_inbox") == 1


async def test_the_same_event_five_times_is_handled_once(
    client, shipped_order, resources, run_jobs
):
    order, number = await shipped_order("TRANSIT")
    body = track_updated(number, "TRANSIT")
    answers = [(await client.post(URL, json=body)).json()["status"] for _ in range(5)]
    assert answers == ["accepted"] + ["duplicate"] * 4
    assert await _count(resources, "SELECT count(*) FROM webhook_inbox") == 1
    jobs = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'shipping.handle_webhook'"
    assert await _count(resources, jobs) == 1
    await run_jobs()
    assert [s for s, _ in await _events(resources, order.id)] == ["PRE_TRANSIT", "TRANSIT"]
    assert (await order_row(resources, order.id)).status is OrderStatus.SHIPPED
    assert [h[1] for h in await history(resources, order.id)] == ["shipped"]


async def test_delivered_before_transit_ends_received_with_both_events(
    client, shipped_order, resources, run_jobs, shippo_server
):
    order, number = await shipped_order("DELIVERED")
    delivered = track_updated(number, "DELIVERED")
    # The DELIVERED update comes first and lists nothing before it (a carrier's late scan).
    delivered["data"]["tracking_history"] = [delivered["data"]["tracking_status"]]
    assert (await client.post(URL, json=delivered)).json() == {"status": "accepted"}
    await run_jobs()
    stored = await order_row(resources, order.id)
    assert stored.status is OrderStatus.RECEIVED and stored.received_at is not None
    # Moved only after asking the carrier, not on the body's word.
    assert len(shippo_server.calls("GET", "/tracks/usps/")) == 1

    transit = track_updated(number, "TRANSIT")
    assert (await client.post(URL, json=transit)).json() == {"status": "accepted"}
    await run_jobs()
    assert (await order_row(resources, order.id)).status is OrderStatus.RECEIVED
    assert [s for s, _ in await _events(resources, order.id)] == [
        "PRE_TRANSIT",
        "TRANSIT",
        "DELIVERED",
    ]
    moves = await history(resources, order.id)
    assert [(m[0], m[1]) for m in moves] == [
        ("awaiting_shipment", "shipped"),
        ("shipped", "received"),
    ]
    assert all(m[2] == "system:carrier-tracking" for m in moves)
    # The late TRANSIT moved nothing, but what it says would be shown: the carrier was asked.
    assert len(shippo_server.calls("GET", "/tracks/usps/")) == 2

    tracking = await client.get(f"/api/orders/{order.id}/tracking", headers=await _owner(order))
    assert tracking.status_code == 200
    assert [e["status"] for e in tracking.json()["events"]] == [
        "PRE_TRANSIT",
        "TRANSIT",
        "DELIVERED",
    ]


async def test_a_forged_delivered_body_moves_only_as_far_as_the_carrier_says(
    client, shipped_order, resources, run_jobs
):
    order, number = await shipped_order("TRANSIT")
    await client.post(URL, json=track_updated(number, "DELIVERED"))
    await run_jobs()
    assert (await order_row(resources, order.id)).status is OrderStatus.SHIPPED
    assert [s for s, _ in await _events(resources, order.id)] == ["PRE_TRANSIT", "TRANSIT"]


async def test_unknown_tracking_number_is_kept_and_answered_without_a_move(
    client, resources, run_jobs
):
    response = await client.post(URL, json=track_updated("9400000000000000000001", "DELIVERED"))
    assert response.status_code == 200 and response.json() == {"status": "accepted"}
    await run_jobs()
    async with resources.sessionmaker() as session:
        [row] = (await session.scalars(select(WebhookInbox))).all()
    assert row.processed_at is not None and row.order_id is None
    assert row.outcome.startswith("no order has tracking number")
    assert row.body["data"]["tracking_number"] == "9400000000000000000001"
    assert await _count(resources, "SELECT count(*) FROM shipping_events") == 0
    assert await _count(resources, "SELECT count(*) FROM order_status_history") == 0


async def test_a_number_two_orders_claim_moves_neither(client, shipped_order, resources, run_jobs):
    """An imported order carrying another's tracking number (a legacy record, say): the
    carrier's update matches neither, rather than moving whichever came first."""
    order, number = await shipped_order("DELIVERED")
    other, _ = await shipped_order("TRANSIT")
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order).where(Order.id == other.id).values(tracking_number=number)
        )
    before = [(await order_row(resources, o.id)).status for o in (order, other)]
    await client.post(URL, json=track_updated(number, "DELIVERED"))
    await run_jobs()
    assert [(await order_row(resources, o.id)).status for o in (order, other)] == before
    assert await _count(resources, "SELECT count(*) FROM shipping_events") == 0
    async with resources.sessionmaker() as session:
        [row] = (await session.scalars(select(WebhookInbox))).all()
    assert row.order_id is None and row.outcome.startswith("no order has tracking number")


async def test_an_unreadable_body_is_kept_for_an_operator(client, resources):
    for raw in (b"{not json", b'["a list"]', b'{"event": "track_updated", "data": {}}'):
        response = await client.post(URL, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 200 and response.json() == {"status": "kept"}
    async with resources.sessionmaker() as session:
        rows = (
            await session.scalars(select(WebhookInbox).order_by(WebhookInbox.received_at))
        ).all()
    assert [r.raw_body for r in rows] == [
        "{not json",
        '["a list"]',
        '{"event": "track_updated", "data": {}}',
    ]
    assert all(r.error and r.processed_at is None for r in rows)
    jobs = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'shipping.handle_webhook'"
    assert await _count(resources, jobs) == 0


async def test_returned_parcel_is_flagged_for_an_operator(
    client, shipped_order, resources, run_jobs, shippo_server
):
    order, number = await shipped_order("TRANSIT")
    returned_at = (T0 + dt.timedelta(days=3)).isoformat()
    shippo_server.state.tracks[number] = [*STEPS[:2], ("RETURNED", returned_at)]
    body = track_updated(number, "TRANSIT")
    body["data"]["tracking_status"] = {"status": "RETURNED", "status_date": returned_at}
    await client.post(URL, json=body)
    await run_jobs()
    stored = await order_row(resources, order.id)
    assert stored.status is OrderStatus.SHIPPED
    assert "RETURNED" in stored.attention_reason and stored.attention_at is not None


async def test_transaction_updated_completes_a_label_we_wait_on(
    client, make_user, make_order, resources, run_jobs, shippo_server, shippo_settings
):
    """The label job gave up while the carrier was still working; Shippo's transaction_updated
    then says it succeeded: the label is completed as the job does it (one label, stored)."""
    seller = await make_user()
    order = await make_order(seller)
    txn_id = shippo_server.add_label("rate_x", metadata=f"order:{order.id}")
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == order.id)
            .values(
                status=OrderStatus.PROCESSING_SHIPMENT,
                shipping_rate_id="rate_x",
                label_transaction_id=txn_id,
            )
        )
        # The label job's next try is minutes away (it timed out waiting on the carrier).
        await follow_ups.defer(session, follow_ups.PURCHASE_LABEL, order.id)
        await session.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() + interval '10 minutes' "
                "WHERE task_name = 'shipping.purchase_label'"
            )
        )
    body = {
        "event": "transaction_updated",
        "test": True,
        "data": {
            "object_id": txn_id,
            "status": "SUCCESS",
            "object_updated": dt.datetime.now(dt.UTC).isoformat(),
            "metadata": f"order:{order.id}",
            "rate": "rate_x",
            "tracking_number": "",
            "messages": [],
        },
    }
    assert (await client.post(URL, json=body)).json() == {"status": "accepted"}
    await run_jobs()
    stored = await order_row(resources, order.id)
    assert stored.status is OrderStatus.AWAITING_SHIPMENT and stored.label_file_key
    assert [j.status for j in await label_jobs(resources, order.id)] == ["succeeded"]
    assert [t["object_id"] for t in shippo_server.transactions_created()] == [txn_id]


async def test_a_thousand_concurrent_posts_for_a_hundred_orders(
    client, shipped_order, resources, run_jobs
):
    """Done-when 2: every event stored exactly once, every order received, no 5xx."""
    orders = [await shipped_order("DELIVERED") for _ in range(100)]
    bodies = []
    for _, number in orders:
        for upto in ("PRE_TRANSIT", "TRANSIT", "DELIVERED", "TRANSIT", "DELIVERED"):
            bodies += [track_updated(number, upto)] * 2
    random.Random(7).shuffle(bodies)
    assert len(bodies) == 1000
    gate = asyncio.Semaphore(100)

    async def post(body: dict) -> int:
        async with gate:
            return (await client.post(URL, json=body)).status_code

    statuses = await asyncio.gather(*(post(b) for b in bodies))
    assert set(statuses) == {200}
    # Three distinct events per order were delivered (each several times): three rows each.
    assert await _count(resources, "SELECT count(*) FROM webhook_inbox") == 300
    await run_jobs()
    unhandled = "SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL"
    assert await _count(resources, unhandled) == 0
    async with resources.sessionmaker() as session:
        per_order = dict(
            (
                await session.execute(
                    select(ShippingEvent.order_id, func.count()).group_by(ShippingEvent.order_id)
                )
            ).all()
        )
        statuses_now = set(
            (
                await session.scalars(
                    select(Order.status).where(Order.id.in_([o.id for o, _ in orders]))
                )
            ).all()
        )
    assert per_order == {o.id: 3 for o, _ in orders}
    assert statuses_now == {OrderStatus.RECEIVED}
    failed = "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'"
    assert await _count(resources, failed) == 0
    moves = "SELECT count(*) FROM order_status_history WHERE status = 'received'"
    assert await _count(resources, moves) == 100


async def _owner(order) -> dict[str, str]:
    from refit import resources as res
    from refit.auth.tokens import issue_access_token

    token = issue_access_token(res.current().settings, order.user_id)
    return {"Authorization": f"Bearer {token.token}"}
