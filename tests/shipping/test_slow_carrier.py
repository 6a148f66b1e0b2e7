"""A slow or rate-limited carrier costs sellers a 503, never the database pool or a lock.

The carrier is the local Shippo server: it can hold validation and rating requests until the
test releases them, or answer every call with a 429. Nothing here sleeps: the tests wait on
the server's count of held requests and on responses, each with a bounded deadline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors as pg_errors

from refit import db
from refit.addresses.service import fingerprint
from refit.carriers.interface import CarrierUnavailable
from refit.carriers.shippo.client import ShippoCarrier
from refit.models import OrderStatus, ShippingAddress
from refit.models.shipping import RateQuote
from refit.settings import Settings
from tests.shipping.helpers import buy, order_row
from tests.shipping.shippo_server import TOKEN
from tests.shipping.test_shippo_contract import SELLER

# How long any one wait may take before the test fails (not how long things should take).
DEADLINE = 30.0


@pytest.fixture
def settings(settings: Settings, shippo_server) -> Settings:
    """Shippo as the carrier, and a pool small enough to run out: 2 connections + 1."""
    settings.shippo_api_key = TOKEN
    settings.shippo_base_url = shippo_server.url
    settings.shippo_timeout_seconds = 30
    settings.db_pool_size = 2
    settings.db_max_overflow = 1
    return settings


async def _connect(settings: Settings) -> psycopg.AsyncConnection:
    """A connection of its own, outside the app's pool (which the test may see exhausted)."""
    assert settings.database_url
    return await psycopg.AsyncConnection.connect(db.libpq_url(settings.database_url))


async def _idle_in_transaction(settings: Settings) -> int:
    """Connections to this test's database holding a transaction open while doing nothing."""
    async with await _connect(settings) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _held(shippo_server, n: int) -> None:
    # In a thread: the event loop must keep running the requests that are to be held.
    assert await asyncio.to_thread(shippo_server.wait_for_held, n, DEADLINE), (
        f"{shippo_server.held_count()} of {n} requests reached the carrier"
    )


async def test_reads_are_served_while_more_rates_requests_than_the_pool_wait_on_the_carrier(
    client, make_user, make_order, resources, shippo_server
):
    waiting, reader = await make_user(), await make_user()
    order = await make_order(waiting)
    theirs = await make_order(reader)
    settings = resources.settings
    crowd = settings.db_pool_size + settings.db_max_overflow + 3

    shippo_server.hold_rating()
    try:
        asked = [
            asyncio.create_task(
                client.post(
                    "/api/shipping/rates", json={"order_id": str(order.id)}, headers=waiting.headers
                )
            )
            for _ in range(crowd)
        ]
        await _held(shippo_server, crowd)
        # Every one of them is at the carrier, and none holds a transaction while it waits.
        assert await _idle_in_transaction(settings) == 0

        one = await asyncio.wait_for(
            client.get(f"/api/orders/{theirs.id}", headers=reader.headers), DEADLINE
        )
        listed = await asyncio.wait_for(client.get("/api/orders", headers=reader.headers), DEADLINE)
        assert one.status_code == 200, one.text
        assert one.json()["id"] == str(theirs.id)
        assert listed.status_code == 200, listed.text
        assert [o["id"] for o in listed.json()["items"]] == [str(theirs.id)]
        # ...answered while all the rates requests were still held at the carrier.
        assert shippo_server.held_count() == crowd
        assert not any(task.done() for task in asked)
    finally:
        shippo_server.release_rating()

    answers = await asyncio.wait_for(asyncio.gather(*asked), DEADLINE)
    assert [a.status_code for a in answers] == [200] * crowd, [a.text for a in answers]
    assert all(len(a.json()["rates"]) == 3 for a in answers)


@pytest.mark.parametrize("retry_after", [120, 20])
async def test_a_rate_limited_carrier_is_a_503_with_retry_after_at_once(
    client, make_user, make_order, shippo_server, retry_after
):
    """20 s is a wait the label job would sit out (and then send again); a seller is told to
    come back instead. One call each reached the carrier: no retry, no wait."""
    seller = await make_user()
    order = await make_order(seller)
    shippo_server.throttle(retry_after)

    rates = await asyncio.wait_for(
        client.post(
            "/api/shipping/rates", json={"order_id": str(order.id)}, headers=seller.headers
        ),
        DEADLINE,
    )
    checked = await asyncio.wait_for(
        client.post(
            "/api/shipping/validate-address",
            json={"address_id": str(order.shipping_address_id)},
            headers=seller.headers,
        ),
        DEADLINE,
    )
    for response in (rates, checked):
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "carrier_unavailable"
        assert response.headers["retry-after"] == str(retry_after)
    assert len(shippo_server.calls("POST", "/addresses")) == 2
    assert shippo_server.calls("POST", "/shipments") == []


async def test_purchase_asks_the_carrier_about_the_address_without_locking_the_order(
    client, make_user, make_order, resources, shippo_server
):
    seller = await make_user()
    order = await make_order(seller)
    # A rate quoted for the order's address as it is, but no verdict on the address kept
    # (none recorded, none cached): buying it needs the carrier's word on the address first.
    async with resources.sessionmaker() as session, session.begin():
        address = await session.get(ShippingAddress, order.shipping_address_id)
        assert address is not None and address.validation_data is None
        session.add(
            RateQuote(
                order_id=order.id,
                rate_id="rate_before_any_verdict",
                carrier_name="shippo",
                shipment_id="shp_earlier",
                carrier="USPS",
                service="Priority Mail",
                amount=Decimal("9.50"),
                currency="USD",
                address_fingerprint=fingerprint(address),
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
            )
        )

    shippo_server.hold_rating()
    try:
        purchase = asyncio.create_task(buy(client, seller, order.id, "rate_before_any_verdict"))
        await _held(shippo_server, 1)
        assert await _idle_in_transaction(resources.settings) == 0
        async with await _connect(resources.settings) as conn:
            try:
                await conn.execute(
                    "SELECT id FROM orders WHERE id = %s FOR UPDATE NOWAIT", (order.id,)
                )
            except pg_errors.LockNotAvailable:
                pytest.fail("the order stayed locked while the carrier was asked")
            await conn.rollback()
        assert shippo_server.held_count() == 1 and not purchase.done()
    finally:
        shippo_server.release_rating()

    response = await asyncio.wait_for(purchase, DEADLINE)
    assert response.status_code == 202, response.text
    assert response.json()["order"]["status"] == OrderStatus.PROCESSING_SHIPMENT
    assert len(shippo_server.calls("POST", "/addresses")) == 1
    async with resources.sessionmaker() as session:
        kept = await session.get(ShippingAddress, order.shipping_address_id)
        assert kept is not None and kept.is_validated is True
        assert kept.validation_data["carrier"] == "shippo"
    stored = await order_row(resources, order.id)
    assert stored.shipping_rate_id == "rate_before_any_verdict"


async def test_a_seller_waits_on_the_carrier_no_longer_than_the_budget(shippo_server, tmp_path):
    """All calls of a seller's request share one time budget: when it is spent the request
    gives up (CarrierUnavailable, a 503) while the carrier still holds the call, and a second
    call does not reach the carrier at all."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        shippo_api_key=TOKEN,
        shippo_base_url=shippo_server.url,
        shippo_timeout_seconds=30,
    )
    api, downloads = ShippoCarrier.clients(settings)
    shippo_server.hold_rating()
    try:
        async with api, downloads:
            carrier = ShippoCarrier(api, downloads, budget_seconds=0.5)
            with pytest.raises(CarrierUnavailable) as caught:
                await asyncio.wait_for(carrier.validate_address(SELLER), DEADLINE)
            assert caught.value.retryable
            assert shippo_server.held_count() == 1  # the carrier had not answered
            with pytest.raises(CarrierUnavailable):
                await carrier.validate_address(SELLER)
    finally:
        shippo_server.release_rating()
    assert len(shippo_server.calls("POST", "/addresses")) == 1
