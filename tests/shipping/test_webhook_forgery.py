"""Issue 21: a webhook that carries the right URL token is still only a hint. Whatever the
order's state, the job reads the track from the carrier (the Shippo-shaped server) and only
that answer is shown or acted on; and production asks for Shippo's HMAC signature too, unless
told the account has none."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text

from refit.models import Order, OrderStatus
from refit.models.shipping import ReturnShipment, ReturnStatus, WebhookInbox
from refit.settings import DEV_WEBHOOK_TOKEN, Settings
from tests.shipping.helpers import history, order_row

URL = f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}"
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
# What the carrier really has: the parcel is on its way, nothing more.
CARRIER_SAYS = [
    ("PRE_TRANSIT", T0.isoformat()),
    ("TRANSIT", (T0 + dt.timedelta(hours=5)).isoformat()),
]
FORGED_TEXT = "Delivered to the seller's neighbour - call 555-0100 to claim your payout"


def forged(number: str, status: str = "DELIVERED") -> dict[str, Any]:
    """A well-formed track_updated claiming `status`, with text no carrier wrote."""
    event = {
        "object_id": f"forged_{uuid.uuid4().hex[:8]}",
        "status": status,
        "status_details": FORGED_TEXT,
        "status_date": (T0 + dt.timedelta(days=1)).isoformat(),
        "substatus": {"code": "delivered", "text": FORGED_TEXT, "action_required": False},
        "location": {"city": "Nowhere", "state": "NV", "zip": "89001", "country": "US"},
    }
    return {
        "event": "track_updated",
        "test": False,
        "data": {
            "carrier": "usps",
            "tracking_number": number,
            "eta": None,
            "metadata": None,
            "address_to": {"city": "Nowhere", "state": "NV", "zip": "89001"},
            "tracking_status": event,
            "tracking_history": [event],
        },
    }


async def _order(resources, make_user, status: OrderStatus) -> tuple[Order, str, Any]:
    seller = await make_user()
    number = f"9400{uuid.uuid4().int % 10**18:018d}"
    async with resources.sessionmaker() as session, session.begin():
        order = Order(
            user_id=seller.id,
            status=status,
            device_brand="Apple",
            device_model="iPhone 13",
            device_condition="good",
            quoted_price_usd=Decimal("412.50"),
            quoted_price_sol=Decimal("2.7500"),
            tracking_number=number,
            shipping_carrier="USPS",
        )
        session.add(order)
    return order, number, seller


async def _tracking_page(client, order, seller) -> str:
    response = await client.get(f"/api/orders/{order.id}/tracking", headers=seller.headers)
    assert response.status_code == 200, response.text
    return response.text


@pytest.mark.parametrize(
    "status",
    [
        OrderStatus.RECEIVED,
        OrderStatus.INSPECTING,
        OrderStatus.OFFER_PENDING,
        OrderStatus.COMPLETED,
    ],
)
@pytest.mark.parametrize("claim", ["DELIVERED", "RETURNED"])
async def test_a_forged_tokened_update_past_shipped_shows_and_moves_nothing(
    client, resources, make_user, run_jobs, shippo_server, shippo_settings, status, claim
):
    order, number, seller = await _order(resources, make_user, status)
    shippo_server.state.tracks[number] = CARRIER_SAYS
    response = await client.post(URL, json=forged(number, claim))
    assert response.json() == {"status": "accepted"}
    await run_jobs()

    # Only the carrier's answer was recorded: the seller sees none of the body's words.
    page = await _tracking_page(client, order, seller)
    assert FORGED_TEXT not in page and "Nowhere" not in page
    assert [e["status"] for e in json.loads(page)["events"]] == ["PRE_TRANSIT", "TRANSIT"]
    # Nothing acted on: no move, no flag for an operator.
    stored = await order_row(resources, order.id)
    assert stored.status is status
    assert stored.attention_reason is None
    assert await history(resources, order.id) == []
    assert len(shippo_server.calls("GET", f"/tracks/usps/{number}")) == 1
    async with resources.sessionmaker() as session:
        [row] = (await session.scalars(select(WebhookInbox))).all()
    assert row.processed_at is not None and row.order_id == order.id


async def test_a_forged_delivery_of_the_parcel_home_does_not_end_the_order(
    client, resources, make_user, run_jobs, shippo_server, shippo_settings
):
    order, _, seller = await _order(resources, make_user, OrderStatus.RETURNING)
    home = f"9400{uuid.uuid4().int % 10**18:018d}"
    async with resources.sessionmaker() as session, session.begin():
        session.add(
            ReturnShipment(
                order_id=order.id,
                status=ReturnStatus.PURCHASED,
                carrier="usps",
                tracking_number=home,
            )
        )
    shippo_server.state.tracks[home] = CARRIER_SAYS
    await client.post(URL, json=forged(home))
    await run_jobs()
    assert len(shippo_server.calls("GET", f"/tracks/usps/{home}")) == 1
    assert (await order_row(resources, order.id)).status is OrderStatus.RETURNING
    assert FORGED_TEXT not in await _tracking_page(client, order, seller)


async def test_the_real_delivery_still_moves_the_order(
    client, resources, make_user, run_jobs, shippo_server, shippo_settings
):
    """The same body, once the carrier agrees: the order moves, with the carrier's words."""
    order, number, seller = await _order(resources, make_user, OrderStatus.SHIPPED)
    delivered = (T0 + dt.timedelta(days=2)).isoformat()
    shippo_server.state.tracks[number] = [*CARRIER_SAYS, ("DELIVERED", delivered)]
    body = forged(number)
    body["data"]["address_to"]["zip"] = shippo_settings.warehouse_zip
    await client.post(URL, json=body)
    await run_jobs()
    assert (await order_row(resources, order.id)).status is OrderStatus.RECEIVED
    page = await _tracking_page(client, order, seller)
    assert FORGED_TEXT not in page and "Status DELIVERED" in page


# --- HMAC in production ------------------------------------------------------------------

PRODUCTION: dict[str, Any] = {
    "env": "production",
    "jwt_secret": secrets.token_hex(32),
    "shippo_webhook_token": secrets.token_hex(24),
    "shippo_api_key": "shippo_live_" + secrets.token_hex(16),
    "smtp_url": "smtps://refit:password@smtp.example:465",
    "sentry_dsn": "https://public@o1.ingest.sentry.example/1",
    "database_url": "postgresql://refit@db.example/refit",
    "redis_url": "redis://cache.example:6379/0",
    "solana_rpc_url": "https://rpc.example",
    "treasury_keypair": "/run/secrets/treasury.json",
    "treasury_pubkey": "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
}


def test_production_with_a_shippo_key_refuses_to_start_without_the_hmac_secret():
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **PRODUCTION)  # type: ignore[call-arg]
    message = refused.value.errors()[0]["msg"]
    assert "REFIT_SHIPPO_WEBHOOK_HMAC_SECRET must be set" in message
    assert "REFIT_SHIPPO_WEBHOOK_NO_HMAC=true" in message


def test_production_starts_with_the_secret_or_an_explicit_no_hmac():
    signed = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **PRODUCTION,
        shippo_webhook_hmac_secret=secrets.token_hex(24),
    )
    assert signed.shippo_webhook_hmac_secret
    unsigned = Settings(_env_file=None, **PRODUCTION, shippo_webhook_no_hmac=True)  # type: ignore[call-arg]
    assert unsigned.shippo_webhook_hmac_secret is None
    # Development and tests have no Shippo account of their own: nothing asked of them.
    assert Settings(_env_file=None, env="development", shippo_api_key="shippo_test_x")  # type: ignore[call-arg]


async def test_unsigned_webhooks_are_refused_once_the_secret_is_set(client, resources):
    resources.settings.shippo_webhook_hmac_secret = secrets.token_hex(24)
    response = await client.post(URL, json=forged("9400000000000000000001"))
    assert response.status_code == 401 and response.json()["code"] == "webhook_unauthorized"
    async with resources.sessionmaker() as session:
        assert await session.scalar(text("SELECT count(*) FROM webhook_inbox")) == 0
