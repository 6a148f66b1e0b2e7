"""POST /api/shipping/rates and /purchase-label: what the seller may buy, and when."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select, text

from refit import transactions
from refit.app import create_app
from refit.auth.deps import CurrentClaims, UserSessionDep
from refit.carriers.picker import CARRIER_CALLS_PER_USER, carrier_name
from refit.errors import Conflict
from refit.models import OrderStatus
from refit.models.shipping import RateQuote
from refit.shipping import purchases
from tests.shipping.helpers import buy, history, label_jobs, order_row, quote


async def test_rates_are_deterministic_sorted_and_quoted(client, make_user, make_order, resources):
    seller = await make_user()
    order = await make_order(seller)
    rates = await quote(client, seller, order.id)
    assert [(r["carrier"], r["service"]) for r in rates] == [
        ("USPS", "Ground Advantage"),
        ("USPS", "Priority Mail"),
        ("UPS", "Ground"),
    ]
    # Zone 1 (94043 -> 94117), the 1.0 lb phone box: 6.60, 9.50 and 11.80 of postage, plus
    # 4.13 of insurance (1% of the $412.50 quote, above insure_above_usd).
    assert [r["amount"] for r in rates] == ["10.73", "13.63", "15.93"]
    assert all(r["currency"] == "USD" and r["estimated_days"] for r in rates)
    # Cached: asking again shows the same rate objects, no new carrier shipment.
    assert await quote(client, seller, order.id) == rates
    async with resources.sessionmaker() as session:
        quoted = set(
            await session.scalars(select(RateQuote.rate_id).where(RateQuote.order_id == order.id))
        )
    assert quoted == {r["rate_id"] for r in rates}


async def test_parcel_follows_the_device_category(client, make_user, make_order):
    seller = await make_user()
    phone = await make_order(seller, category="phone")
    laptop = await make_order(seller, category="laptop", model="MacBook Pro 14")
    guessed = await make_order(seller, category=None, model="MacBook Air")
    phone_rates = await quote(client, seller, phone.id)
    laptop_rates = await quote(client, seller, laptop.id)
    guessed_rates = await quote(client, seller, guessed.id)
    assert [r["amount"] for r in laptop_rates] == [r["amount"] for r in guessed_rates]
    assert all(
        float(big["amount"]) > float(small["amount"])
        for big, small in zip(laptop_rates, phone_rates, strict=True)
    )


async def test_rates_refuse_what_they_should(client, make_user, make_order, resources):
    seller, other = await make_user(), await make_user()
    order = await make_order(seller)
    response = await client.post(
        "/api/shipping/rates", json={"order_id": str(order.id)}, headers=other.headers
    )
    assert response.status_code == 404 and response.json()["code"] == "order_not_found"
    bad = await client.post(
        "/api/shipping/rates", json={"order_id": "nope"}, headers=seller.headers
    )
    assert bad.status_code == 422
    nowhere = await make_order(seller, street1="Main Street")  # no house number
    refused = await client.post(
        "/api/shipping/rates", json={"order_id": str(nowhere.id)}, headers=seller.headers
    )
    assert refused.status_code == 422 and refused.json()["code"] == "address_invalid"
    assert refused.json()["messages"][0]["code"] == "premise_number_missing"


async def test_purchase_label_moves_to_processing_and_queues_one_job(
    client, make_user, make_order, resources
):
    seller = await make_user()
    order = await make_order(seller)
    rate = (await quote(client, seller, order.id))[1]
    response = await buy(client, seller, order.id, rate["rate_id"], **{"Idempotency-Key": "k1"})
    assert response.status_code == 202, response.text
    assert response.json()["order"]["status"] == "processing_shipment"
    [job] = await label_jobs(resources, order.id)
    assert job.status == "todo" and job.queueing_lock == f"purchase-label:{order.id}"
    # The purchase request's id rides along for the job's log lines (refit.logs.job_origin).
    origin = {"_origin": {"request_id": response.headers["x-request-id"]}}
    assert job.lock == f"label:{order.id}" and job.args == {"order_id": str(order.id), **origin}
    stored = await order_row(resources, order.id)
    assert (stored.shipping_rate_id, stored.shipping_service, str(stored.shipping_cost)) == (
        rate["rate_id"],
        "Priority Mail",
        rate["amount"],
    )
    assert await history(resources, order.id) == [
        ("pending", "processing_shipment", f"user:{seller.id}")
    ]

    # The same key and body: the first response again, nothing new.
    replay = await buy(client, seller, order.id, rate["rate_id"], **{"Idempotency-Key": "k1"})
    assert replay.status_code == 202 and replay.json() == response.json()
    other_body = await buy(client, seller, order.id, "x", **{"Idempotency-Key": "k1"})
    assert other_body.status_code == 409
    again = await buy(client, seller, order.id, rate["rate_id"])
    assert again.status_code == 409 and again.json()["code"] == "invalid_transition"
    assert len(await label_jobs(resources, order.id)) == 1


async def test_only_a_rate_quoted_for_this_order_can_be_bought(
    client, make_user, make_order, resources
):
    seller = await make_user()
    order, other_order = await make_order(seller), await make_order(seller, street1="9 Elm St")
    await quote(client, seller, order.id)
    foreign = (await quote(client, seller, other_order.id))[0]["rate_id"]
    for rate_id in ("rate_made_up", foreign):
        response = await buy(client, seller, order.id, rate_id)
        assert response.status_code == 422 and response.json()["code"] == "unknown_rate"
    assert (await order_row(resources, order.id)).status == OrderStatus.PENDING
    assert await label_jobs(resources) == []


async def test_a_changed_address_or_an_old_rate_needs_new_rates(
    client, make_user, make_order, resources
):
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    moved = await client.patch(
        f"/api/shipping/addresses/{order.shipping_address_id}",
        json={"street1": "2 Main St"},
        headers=seller.headers,
    )
    assert moved.status_code == 200
    response = await buy(client, seller, order.id, rate_id)
    assert response.status_code == 409 and response.json()["code"] == "rate_expired"
    fresh = (await quote(client, seller, order.id))[0]["rate_id"]
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE shipping_rate_quotes SET expires_at = now() - interval '1 second'")
        )
    response = await buy(client, seller, order.id, fresh)
    assert response.status_code == 409 and response.json()["code"] == "rate_expired"
    assert await label_jobs(resources) == []


async def test_purchase_refuses_an_address_the_carrier_says_is_invalid(
    client, make_user, make_order, resources, shippo_settings, shippo_server
):
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    # The carrier changes its mind about the address; the seller's re-check records it.
    shippo_server.refuse_address("1600 Amphitheatre Pkwy")
    checked = await client.post(
        "/api/shipping/validate-address",
        json={"address_id": str(order.shipping_address_id)},
        headers=seller.headers,
    )
    assert checked.status_code == 200 and checked.json()["is_valid"] is False
    response = await buy(client, seller, order.id, rate_id)
    assert response.status_code == 422 and response.json()["code"] == "address_invalid"
    assert (await order_row(resources, order.id)).status == OrderStatus.PENDING
    assert await label_jobs(resources) == []


async def test_rolled_back_purchase_leaves_no_job_and_no_change(
    client, make_user, make_order, resources
):
    """Done-when 5: the job is written in the request's transaction; if that transaction
    rolls back, neither the job nor the order's change exists."""
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    carrier = carrier_name(resources.settings)

    # 1. The real service in a seller's transaction that fails after the transition.
    with pytest.raises(RuntimeError):
        async with resources.sessionmaker() as session, session.begin():
            await transactions.act_as_user(session, seller.id)
            moved = await purchases.request_label(
                session, order.id, rate_id, user_id=seller.id, carrier_name=carrier
            )
            assert moved.status == OrderStatus.PROCESSING_SHIPMENT
            async with transactions.as_service(session):
                inside = await session.scalar(
                    text(
                        "SELECT count(*) FROM procrastinate_jobs "
                        "WHERE task_name = 'shipping.purchase_label'"
                    )
                )
            assert inside == 1  # the job exists inside the transaction...
            raise RuntimeError("the request failed after the transition")
    assert await label_jobs(resources) == []  # ...and not after the rollback
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.PENDING and stored.shipping_rate_id is None
    assert await history(resources, order.id) == []

    # 2. Through HTTP: an endpoint that runs purchase-label's service and then fails with a
    # business error (the request dependency rolls back on any error).
    app = create_app(resources.settings, resources=resources)

    @app.post("/probe/purchase-then-fail")
    async def probe(session: UserSessionDep, claims: CurrentClaims) -> None:
        await purchases.request_label(
            session, order.id, rate_id, user_id=claims.user_id, carrier_name=carrier
        )
        raise Conflict("changed my mind", code="probe_conflict")

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        failed = await http.post("/probe/purchase-then-fail", headers=seller.headers)
    assert failed.status_code == 409
    assert await label_jobs(resources) == []
    assert (await order_row(resources, order.id)).status == OrderStatus.PENDING
    async with resources.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(RateQuote)) == 3

    # And the same purchase, committed, leaves exactly one job.
    response = await buy(client, seller, order.id, rate_id)
    assert response.status_code == 202
    assert len(await label_jobs(resources)) == 1


async def test_carrier_down_is_a_503_with_retry_after(
    client, make_user, make_order, settings, shippo_settings
):
    seller = await make_user()
    order = await make_order(seller)
    settings.shippo_base_url = "http://127.0.0.1:9"  # nothing listens there
    response = await client.post(
        "/api/shipping/rates", json={"order_id": str(order.id)}, headers=seller.headers
    )
    assert response.status_code == 503
    assert response.json()["code"] == "carrier_unavailable"
    assert int(response.headers["retry-after"]) >= 1


async def test_carrier_calls_are_rate_limited_per_seller(client, make_user, make_order):
    seller, other = await make_user(), await make_user()
    order = await make_order(seller)
    limit = int(CARRIER_CALLS_PER_USER.split("/")[0])
    for _ in range(limit):
        await quote(client, seller, order.id)
    limited = await client.post(
        "/api/shipping/rates", json={"order_id": str(order.id)}, headers=seller.headers
    )
    assert limited.status_code == 429 and "retry-after" in limited.headers
    # Another seller is not affected.
    mine = await make_order(other)
    assert await quote(client, other, mine.id)
