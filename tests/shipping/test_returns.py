"""The way home: a declined or lapsed offer takes the order to returning, the return job buys
one insured label from the warehouse to the seller, and the carrier's delivery of it ends the
order cancelled, with one email per step. On the sandbox carrier, in process."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text, update

from refit.carriers.interface import TrackingStatus
from refit.carriers.sandbox.carrier import SandboxCarrier
from refit.carriers.sandbox.tracking import tracking_of
from refit.carriers.shippo.wire import track_body
from refit.models import Order, OrderStatus, OutboundEmail, User
from refit.models.shipping import ReturnShipment, SandboxObject, ShippingEvent
from refit.orders.tasks import expire_offers
from refit.settings import DEV_WEBHOOK_TOKEN
from refit.shipping.tasks import sweep_returns
from refit.storage import label_storage
from tests.admin.helpers import operator_headers
from tests.shipping.helpers import history, order_row

URL = f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}"


@pytest.fixture
async def offer_pending(make_user, make_order, resources):
    """A verified seller's order inspected below its quote: a revised offer awaits an answer
    (written into the tables: how it got there is the inspection's tests' concern)."""

    async def make(
        *,
        quoted: str = "412.50",
        final: str = "300.00",
        expires_in: dt.timedelta = dt.timedelta(days=14),
        status: OrderStatus = OrderStatus.OFFER_PENDING,
    ):
        seller = await make_user(email=f"ada-{uuid.uuid4().hex[:8]}@example.com")
        async with resources.sessionmaker() as session, session.begin():
            await session.execute(
                update(User).where(User.id == seller.id).values(email_verified=True)
            )
        order = await make_order(seller)
        async with resources.sessionmaker() as session, session.begin():
            await session.execute(
                update(Order)
                .where(Order.id == order.id)
                .values(
                    status=status,
                    quoted_price_usd=Decimal(quoted),
                    final_price_usd=Decimal(final),
                    offer_expires_at=dt.datetime.now(dt.UTC) + expires_in,
                    tracking_number=f"9400{uuid.uuid4().int % 10**18:018d}",
                    shipping_carrier="USPS",
                )
            )
        return seller, order

    return make


async def _home(resources, order_id) -> ReturnShipment | None:
    async with resources.sessionmaker() as session:
        return await session.scalar(
            select(ReturnShipment).where(ReturnShipment.order_id == order_id)
        )


async def _sandbox_labels_home(resources, order_id) -> list[SandboxObject]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(SandboxObject).where(
                SandboxObject.kind == "transaction",
                SandboxObject.data["metadata"].astext == f"return:{order_id}",
            )
        )
        return list(rows)


async def _emails(resources, user_id) -> dict[str, int]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(OutboundEmail.template, func.count())
            .where(OutboundEmail.user_id == user_id)
            .group_by(OutboundEmail.template)
        )
        return dict(rows.all())


async def _delivered_home(resources, client, number: str, times: int = 1) -> list[str]:
    """The sandbox parcel home reaches the seller, and the carrier says so by webhook (as the
    sandbox's own push job would post it), `times` times over."""
    await SandboxCarrier(resources.sessionmaker).advance_tracking(number, TrackingStatus.DELIVERED)
    return await _post_track(resources, client, number, times)


async def _post_track(resources, client, number: str, times: int = 1) -> list[str]:
    async with resources.sessionmaker() as session:
        row = await session.scalar(
            select(SandboxObject).where(SandboxObject.data["tracking_number"].astext == number)
        )
    assert row is not None
    body = {"event": "track_updated", "test": True, "data": track_body(tracking_of(row.data, ""))}
    return [(await client.post(URL, json=body)).json()["status"] for _ in range(times)]


async def test_declined_offer_goes_home_insured_and_ends_cancelled_once_delivered(
    client, offer_pending, resources, run_jobs, settings
):
    seller, order = await offer_pending()
    declined = await client.post(f"/api/orders/{order.id}/offer/decline", headers=seller.headers)
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "returning"
    await run_jobs()

    home = await _home(resources, order.id)
    assert home is not None and home.status == "purchased"
    # Insured for the higher of the quote and the declined offer; no signature below $500.
    assert (home.insured_usd, home.signature) == (Decimal("412.50"), False)
    [bought] = await _sandbox_labels_home(resources, order.id)
    assert bought.data["extra"] == {
        "insurance": {"amount": "412.50", "currency": "USD", "content": "Used phone"}
    }
    assert bought.object_id == home.transaction_id
    assert bought.data["tracking_number"] == home.tracking_number
    # From the warehouse to the seller's address.
    assert bought.data["address_to_zip"] == "94043"
    assert home.label_file_key == f"returns/{order.id}/{home.transaction_id}.pdf"
    label = await label_storage(settings).get(home.label_file_key)
    assert label.startswith(b"%PDF")
    assert (await order_row(resources, order.id)).status is OrderStatus.RETURNING

    # A forged or early DELIVERED: the carrier, asked again, still says pre-transit.
    assert home.tracking_number is not None
    assert await _post_track(resources, client, home.tracking_number) == ["accepted"]
    await run_jobs()
    assert (await order_row(resources, order.id)).status is OrderStatus.RETURNING

    answers = await _delivered_home(resources, client, home.tracking_number, times=5)
    assert answers == ["accepted"] + ["duplicate"] * 4
    await run_jobs()

    stored = await order_row(resources, order.id)
    assert stored.status is OrderStatus.CANCELLED and stored.cancelled_at is not None
    assert stored.attention_reason is None
    home = await _home(resources, order.id)
    assert home is not None and home.status == "delivered" and home.delivered_at is not None
    moves = await history(resources, order.id)
    assert moves[-2:] == [
        (OrderStatus.OFFER_PENDING, OrderStatus.RETURNING, f"user:{seller.id}"),
        (OrderStatus.RETURNING, OrderStatus.CANCELLED, "system:carrier-tracking"),
    ]
    # The way home's events are told apart from the inbound parcel's, for the seller too.
    async with resources.sessionmaker() as session:
        legs = (
            await session.execute(
                select(ShippingEvent.leg, ShippingEvent.status).where(
                    ShippingEvent.order_id == order.id
                )
            )
        ).all()
    assert sorted((leg.value, status.value) for leg, status in legs) == [
        ("return", "DELIVERED"),
        ("return", "PRE_TRANSIT"),
        ("return", "TRANSIT"),
    ]
    tracking = await client.get(f"/api/orders/{order.id}/tracking", headers=seller.headers)
    assert tracking.status_code == 200
    assert {e["leg"] for e in tracking.json()["events"]} == {"return"}
    assert tracking.json()["tracking_number"] == stored.tracking_number

    # One email per step, however often the carrier told us.
    assert await _emails(resources, seller.id) == {
        "order_returning": 1,
        "order_return_label": 1,
        "order_cancelled": 1,
    }
    async with resources.sessionmaker() as session:
        label_mail = await session.scalar(
            select(OutboundEmail).where(OutboundEmail.template == "order_return_label")
        )
    assert label_mail is not None and label_mail.sent_at is not None
    assert label_mail.context["tracking_number"] == home.tracking_number
    assert label_mail.context["insured_usd"] == "412.50"
    # Still exactly one label home: nothing bought again along the way.
    assert len(await _sandbox_labels_home(resources, order.id)) == 1


async def test_an_unanswered_offer_goes_home_with_a_signature_above_the_threshold(
    offer_pending, resources, run_jobs
):
    seller, order = await offer_pending(
        quoted="650.00", final="420.00", expires_in=-dt.timedelta(minutes=1)
    )
    assert await expire_offers() == 1
    assert (await order_row(resources, order.id)).status is OrderStatus.RETURNING
    await run_jobs()

    home = await _home(resources, order.id)
    assert home is not None and home.status == "purchased"
    assert (home.insured_usd, home.signature) == (Decimal("650.00"), True)
    [bought] = await _sandbox_labels_home(resources, order.id)
    assert bought.data["extra"]["signature_confirmation"] == "STANDARD"
    assert bought.data["extra"]["insurance"]["amount"] == "650.00"
    moves = await history(resources, order.id)
    assert moves[-1] == (
        OrderStatus.OFFER_PENDING,
        OrderStatus.RETURNING,
        "system:orders.expire_offers",
    )
    assert await _emails(resources, seller.id) == {"order_returning": 1, "order_return_label": 1}


async def test_the_sweep_gives_a_returning_order_without_a_job_its_way_home(
    offer_pending, resources, run_jobs
):
    _, order = await offer_pending(status=OrderStatus.RETURNING)  # moved without its job
    assert await sweep_returns(grace_seconds=3600) == 0  # too recent to call it stuck
    assert await sweep_returns(grace_seconds=0) == 1
    assert await sweep_returns(grace_seconds=0) == 0  # its job is waiting
    await run_jobs()
    home = await _home(resources, order.id)
    assert home is not None and home.status == "purchased"
    assert await sweep_returns(grace_seconds=0) == 0  # bought: nothing more to do


async def test_operators_send_a_device_home_and_admins_alone_cancel_or_refund(
    client, offer_pending, make_user, make_order, resources, run_jobs
):
    inspector = await operator_headers(resources, role="inspector")
    admin = await operator_headers(resources, role="admin")

    # Any operator: the seller declined by phone.
    _, order = await offer_pending()
    key = {"Idempotency-Key": f"home-{order.id}"}
    sent = await client.post(
        f"/api/admin/orders/{order.id}/return-label", headers={**inspector, **key}
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["status"] == "returning" and sent.json()["job_id"] is not None
    again = await client.post(
        f"/api/admin/orders/{order.id}/return-label", headers={**inspector, **key}
    )
    assert again.status_code == 202 and again.json() == sent.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    await run_jobs()
    assert (await _home(resources, order.id)).status == "purchased"  # type: ignore[union-attr]
    bought = await client.post(f"/api/admin/orders/{order.id}/return-label", headers=inspector)
    assert bought.status_code == 409 and bought.json()["code"] == "return_label_bought"
    assert bought.headers["content-type"] == "application/problem+json"
    # An unbuyable device, straight from inspection.
    _, unbuyable = await offer_pending(status=OrderStatus.INSPECTING)
    home = await client.post(f"/api/admin/orders/{unbuyable.id}/return-label", headers=inspector)
    assert home.status_code == 202, home.text
    assert (await order_row(resources, unbuyable.id)).status is OrderStatus.RETURNING

    # Admins only: an inspector's cancel or refund changes nothing.
    seller = await make_user()
    pending = await make_order(seller)
    before = await history(resources, pending.id)
    for action in ("cancel", "refund-label"):
        refused = await client.post(f"/api/admin/orders/{pending.id}/{action}", headers=inspector)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "operator_forbidden"
    assert (await order_row(resources, pending.id)).status is OrderStatus.PENDING
    assert await history(resources, pending.id) == before
    async with resources.sessionmaker() as session:
        jobs = await session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE args ->> 'order_id' = :id "
                "AND task_name = 'shipping.refund_label'"
            ),
            {"id": str(pending.id)},
        )
    assert jobs == 0

    early = await client.post(f"/api/admin/orders/{pending.id}/refund-label", headers=admin)
    assert early.status_code == 409 and early.json()["code"] == "invalid_order_state"
    cancelled = await client.post(
        f"/api/admin/orders/{pending.id}/cancel", json={"reason": "fraud check"}, headers=admin
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    [*_, last] = await history(resources, pending.id)
    assert last[1] is OrderStatus.CANCELLED and last[2].startswith("operator:")
    refund = await client.post(f"/api/admin/orders/{pending.id}/refund-label", headers=admin)
    assert refund.status_code == 202 and refund.json()["job_id"] is not None
    late = await client.post(f"/api/admin/orders/{order.id}/cancel", headers=admin)
    assert late.status_code == 409 and late.json()["code"] == "invalid_transition"


async def test_the_sandbox_push_moves_the_parcel_home(client, offer_pending, resources, run_jobs):
    seller, order = await offer_pending()
    operator = await operator_headers(resources, role="inspector")
    early = await client.post(
        f"/api/admin/orders/{order.id}/sandbox-tracking",
        json={"status": "DELIVERED", "leg": "return"},
        headers=operator,
    )
    assert early.status_code == 409 and early.json()["code"] == "label_not_ready"
    await client.post(f"/api/orders/{order.id}/offer/decline", headers=seller.headers)
    await run_jobs()
    home = await _home(resources, order.id)
    assert home is not None and home.tracking_number
    pushed = await client.post(
        f"/api/admin/orders/{order.id}/sandbox-tracking",
        json={"status": "DELIVERED", "leg": "return"},
        headers=operator,
    )
    assert pushed.status_code == 204, pushed.text
    async with resources.sessionmaker() as session:
        row = await session.scalar(
            select(SandboxObject).where(SandboxObject.object_id == home.transaction_id)
        )
        job = await session.scalar(
            text(
                "SELECT args ->> 'tracking_number' FROM procrastinate_jobs "
                "WHERE task_name = 'shipping.sandbox_push_tracking'"
            )
        )
    assert row is not None
    assert tracking_of(row.data, "").status is TrackingStatus.DELIVERED
    assert tracking_of(row.data, "").events[-1].details == "Delivered to the addressee."
    # The push job posts it to our own endpoint (over HTTP: see the journey test).
    assert job == home.tracking_number
