"""Issue 21, done-when 1 and 2: a browser export is history, never instructions.

The red team's upload made orders at any status (`received` with no parcel in the receiving
queue, `shipped` with an invented tracking number, `completed` with another seller's payout
signature) and set the quote a $99,999,999.99 label was insured for. Here every accepted
status, with that price, a tracking number, a label URL and a real-looking signature, gives
only history: every door refuses it, no operator queue shows it, and "continue" makes a fresh
quote and order at the server's price, which is all the carrier (the Shippo-shaped server and
the sandbox) is ever told.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from solders.keypair import Keypair
from sqlalchemy import func, select, text

from bench.localstorage_exports import wallet
from refit.dashboard.queue_reads import counts as queue_counts
from refit.dashboard.queue_reads import queue
from refit.dashboard.work import Work
from refit.errors import Conflict
from refit.localstorage.schemas import ACCEPTED_STATUSES, backend_status
from refit.models import Order, OrderStatus
from refit.models.quote import Quote
from refit.models.shipping import SandboxObject
from tests.inspection.helpers import operator, verdict
from tests.orders.helpers import add_address, operator_move, place_order
from tests.shipping.shippo_server import TOKEN, ShippoServer

S = OrderStatus
URL = "/api/migrate/localstorage"
PRICE = "99999999.99"  # money.MAX_USD: the red team's quote
SERVER_PRICE = "442.00"  # the catalog's iPhone 15 Pro 256GB, "good" (tests/orders/helpers.py)
TRACKING = "9400111899223344556677"
# A payout signature as the chain writes them (base58, 88 characters).
SIGNATURE = (
    "5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnbJLgp8uirBgmQpjKhoR4tjF3ZpRzrFmBV6UjKdiSZkQUW"
)
STAMPED = "2026-11-02T16:45:00Z"


def export(wallet_address: str, *statuses: str, addresses: int = 1) -> dict[str, Any]:
    """One order per status, each carrying everything an attacker would put in it."""
    return {
        "format": "refit-localstorage-export",
        "version": 1,
        "exported_at": "2026-11-20T12:00:00Z",
        "wallet_address": wallet_address,
        "addresses": [
            {
                "id": f"a-{i}",
                "name": "Ada Seller",
                "street1": f"{500 + i} Congress Ave",
                "city": "Austin",
                "state": "TX",
                "zip": "78701",
                "is_default": i == 0,
            }
            for i in range(addresses)
        ],
        "orders": [
            {
                "id": f"o-{i}",
                "status": status,
                "device": {
                    "brand": "Apple",
                    "model": "iPhone 15 Pro",
                    "storage": "256GB",
                    "category": "phone",
                    "condition": "good",
                },
                "quote": {"price_usd": PRICE, "price_sol": "999999.9999"},
                "address_id": "a-0" if addresses else None,
                "created_at": "2026-10-30T14:00:00Z",
                "shipped_at": STAMPED,
                "received_at": STAMPED,
                "completed_at": STAMPED,
                "label": {
                    "carrier": "USPS",
                    "service": "Priority Mail",
                    "tracking_number": TRACKING,
                    "label_url": "https://labels.example/evil.pdf",
                    "cost_usd": "1000010.00",
                    "purchased_at": STAMPED,
                    "raw": {"insurance": PRICE, "signature_confirmation": "ADULT"},
                },
                "payment_tx_signature": SIGNATURE,
            }
            for i, status in enumerate(statuses)
        ],
    }


async def _upload(client, seller, doc) -> dict[str, Any]:
    response = await client.post(URL, json=doc, headers=seller.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _orders(resources, user_id) -> list[Order]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(Order).where(Order.user_id == user_id).order_by(Order.order_number)
        )
        return list(rows)


async def _jobs_for(resources, order_id) -> int:
    async with resources.engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE args->>'order_id' = :id"),
            {"id": str(order_id)},
        )
    return int(found or 0)


@pytest.mark.parametrize("status", ACCEPTED_STATUSES)
async def test_an_export_at_any_status_is_only_history(
    client, resources, settings, make_user, status
):
    seller = await make_user(wallet_address=wallet(f"any-{status}"))
    summary = await _upload(client, seller, export(seller.user.wallet_address, status))
    assert summary["orders_created"] == 1
    assert (summary["tracking_numbers_dropped"], summary["payment_signatures_dropped"]) == (1, 1)

    [order] = await _orders(resources, seller.id)
    assert order.status is S.IMPORTED and order.imported_status is backend_status(status)
    assert str(order.quoted_price_usd) == PRICE  # shown as the seller saw it, nothing more
    assert (order.tracking_number, order.label_url, order.label_purchased_at) == (None,) * 3
    assert order.payment_tx_signature is None and order.quote_id is None
    open_ = backend_status(status) not in (S.COMPLETED, S.CANCELLED)
    assert summary["continuable_order_ids"] == ([str(order.id)] if open_ else [])

    # Every door refuses it: the seller's, the shipping ones, the operators'.
    seller_doors = [
        ("/api/orders/{id}/ship", None),
        ("/api/orders/{id}/cancel", None),
        ("/api/orders/{id}/offer/accept", None),
        ("/api/orders/{id}/offer/decline", None),
        ("/api/shipping/rates", {"order_id": "{id}"}),
        ("/api/shipping/purchase-label", {"order_id": "{id}", "rate_id": "rate_1"}),
    ]
    for path, body in seller_doors:
        sent = json.loads(json.dumps(body).replace("{id}", str(order.id))) if body else None
        response = await client.post(path.format(id=order.id), json=sent, headers=seller.headers)
        assert response.status_code == 409, (path, response.text)
    # A treasury to pay from: the refusal is the order's, not a missing keypair's.
    treasury = Keypair()
    settings.treasury_keypair = SecretStr(json.dumps(list(bytes(treasury))))
    settings.treasury_pubkey = str(treasury.pubkey())
    inspector, admin = await operator(resources), await operator(resources, "admin")
    operator_doors = [
        ("/api/admin/orders/{id}/receive", None, inspector),
        ("/api/admin/orders/{id}/inspection/start", None, inspector),
        ("/api/admin/orders/{id}/inspect", verdict(), inspector),
        ("/api/admin/orders/{id}/pay", None, admin),
    ]
    for path, body, op in operator_doors:
        response = await client.post(path.format(id=order.id), json=body, headers=op.headers)
        assert response.status_code == 409, (path, response.text)
    # And the one door for moves, asked directly as a job or an operator would.
    for target in S:
        with pytest.raises(Conflict):
            await operator_move(resources, order.id, target, actor="system:test")

    [after] = await _orders(resources, seller.id)
    assert (after.status, after.imported_status) == (S.IMPORTED, backend_status(status))
    assert await _jobs_for(resources, order.id) == 0
    async with resources.engine.connect() as conn:
        for table in ("shipping_rate_quotes", "shipping_label_purchases", "payouts"):
            found = await conn.scalar(
                text(f"SELECT count(*) FROM {table} WHERE order_id = :id"),
                {"id": order.id},
            )
            assert found == 0, table


async def test_nothing_imported_is_in_the_receiving_inspection_or_payout_queues(
    client, resources, make_user
):
    seller = await make_user(wallet_address=wallet("queues"))
    await _upload(client, seller, export(seller.user.wallet_address, *ACCEPTED_STATUSES))
    # A real order in the receiving queue: the reads below do find what is there.
    real = await place_order(client, resources, seller)
    for step in (S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT, S.SHIPPED, S.RECEIVED):
        await operator_move(resources, real["id"], step, actor="system:test")
    admin = await operator(resources, "admin")

    for status in S:
        if status is S.IMPORTED:
            continue
        page = await client.get(
            "/api/admin/orders", params={"status": status.value}, headers=admin.headers
        )
        assert page.status_code == 200, page.text
        found = [item["id"] for item in page.json()["items"]]
        assert found == ([real["id"]] if status is S.RECEIVED else []), status
    payouts = await client.get("/api/admin/payouts", headers=admin.headers)
    assert payouts.status_code == 200 and payouts.json()["items"] == []

    seen = {"operator_id": admin.id, "max_usd": resources.settings.payout_max_usd}
    async with resources.sessionmaker() as session:
        by_work, counts = await queue_counts(session, **seen)
        work = await queue(session, work=Work.OPEN, status=None, q=None, after=None, **seen)
        received = await queue(
            session, work=Work.OPEN, status=S.RECEIVED, q=None, after=None, **seen
        )
        imported = await session.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.user_id == seller.user.id, Order.status == S.IMPORTED)
        )
    # The imports are there (the reads below are not empty by accident), and the queue does
    # not count them: it counts the statuses work can be in, never the final ones.
    assert imported == len(ACCEPTED_STATUSES)
    assert S.IMPORTED not in counts and S.COMPLETED not in counts
    assert counts[S.RECEIVED] == 1 and counts[S.SHIPPED] == 0
    assert by_work[Work.OPEN] == by_work[Work.TO_INSPECT] == 1
    # The dashboard's default view (the open work) and its received orders.
    assert [str(row.id) for row in work.rows] == [real["id"]]
    assert [str(row.id) for row in received.rows] == [real["id"]]


async def test_continue_makes_a_fresh_quote_and_order_once(client, resources, make_user):
    seller = await make_user(wallet_address=wallet("continue"))
    summary = await _upload(
        client, seller, export(seller.user.wallet_address, "pending", "in_transit", "paid")
    )
    imported = {o.id: o for o in await _orders(resources, seller.id)}
    shown = {imported[uuid.UUID(i)].imported_status: i for i in summary["continuable_order_ids"]}
    assert set(shown) == {S.PENDING, S.SHIPPED}
    pending_id, shipped_id = shown[S.PENDING], shown[S.SHIPPED]

    # What the export says is never a body: a price asked for is a 422.
    refused = await client.post(
        f"/api/orders/{pending_id}/continue", json={"price_usd": PRICE}, headers=seller.headers
    )
    assert refused.status_code == 422

    made = await client.post(f"/api/orders/{pending_id}/continue", headers=seller.headers)
    assert made.status_code == 201, made.text
    order = made.json()
    assert order["status"] == "pending" and order["imported_status"] is None
    assert order["quoted_price_usd"] == SERVER_PRICE and order["quote_id"] is not None
    assert order["shipping_address_id"] == str(imported[uuid.UUID(pending_id)].shipping_address_id)
    async with resources.sessionmaker() as session:
        quote = await session.get(Quote, uuid.UUID(order["quote_id"]))
        old = await session.get(Order, uuid.UUID(pending_id))
    assert quote is not None and str(quote.price_usd) == SERVER_PRICE
    assert quote.user_id == seller.id
    assert old is not None and str(old.continued_as_id) == order["id"]
    assert old.status is S.IMPORTED

    again = await client.post(f"/api/orders/{pending_id}/continue", headers=seller.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "already_continued"
    assert again.json()["continued_as_id"] == order["id"]

    # Two at once: one order, the other told which.
    both = await asyncio.gather(
        *(
            client.post(f"/api/orders/{shipped_id}/continue", headers=seller.headers)
            for _ in range(2)
        )
    )
    assert sorted(r.status_code for r in both) == [201, 409]
    # A finished one (paid), another seller's, a real order: not continued.
    paid = next(o for o in imported.values() if o.imported_status is S.COMPLETED)
    other = await make_user()
    real = await place_order(client, resources, seller)
    for order_id, who, code in (
        (paid.id, seller, 409),
        (pending_id, other, 404),
        (real["id"], seller, 409),
    ):
        response = await client.post(f"/api/orders/{order_id}/continue", headers=who.headers)
        assert response.status_code == code, response.text
    orders = await _orders(resources, seller.id)
    assert sum(o.status is S.PENDING for o in orders) == 3  # two continued, one placed


async def test_addresses_keep_the_cap_and_the_import_says_which_were_left_out(
    client, resources, make_user
):
    seller = await make_user(wallet_address=wallet("cap"))
    for _ in range(48):
        await add_address(resources, seller.id)
    summary = await _upload(client, seller, export(seller.user.wallet_address, addresses=4))
    assert summary["addresses_created"] == 2
    assert summary["addresses_left_out"] == ["a-2", "a-3"]
    async with resources.engine.connect() as conn:
        saved = await conn.scalar(
            text("SELECT count(*) FROM shipping_addresses WHERE user_id = :u"), {"u": seller.id}
        )
    assert saved == 50
    # A second import brings none of them either: the cap holds across imports.
    again = await _upload(client, seller, export(seller.user.wallet_address, addresses=4))
    assert again["addresses_created"] == 0 and again["addresses_left_out"] == ["a-2", "a-3"]


async def test_uploads_have_their_own_daily_limit(client, resources, settings, make_user):
    settings.rate_limit_localstorage_imports_per_seller = "2/day"
    seller = await make_user(wallet_address=wallet("limit"))
    doc = export(seller.user.wallet_address, "received")
    for _ in range(2):
        await _upload(client, seller, doc)
    refused = await client.post(URL, json=doc, headers=seller.headers)
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"


# --- done-when 2: what the carrier is told -------------------------------------------------


@pytest.fixture
def shippo_server() -> Iterator[ShippoServer]:
    server = ShippoServer().start()
    yield server
    server.stop()


async def _continued(client, seller) -> str:
    summary = await _upload(client, seller, export(seller.user.wallet_address, "pending"))
    [imported_id] = summary["continuable_order_ids"]
    # The imported order itself is rated by no carrier: its price is what a browser said.
    rated = await client.post(
        "/api/shipping/rates", json={"order_id": imported_id}, headers=seller.headers
    )
    assert rated.status_code == 409, rated.text
    made = await client.post(f"/api/orders/{imported_id}/continue", headers=seller.headers)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def _client_values_refused(client, seller, order_id: str) -> list[dict[str, Any]]:
    """Rates and a purchase asked with a price, an insured value and a signature flag of the
    client's: each a 422; then asked properly, the rates."""
    for extra in ({"insurance_usd": PRICE}, {"signature": True}, {"price_usd": PRICE}):
        rated = await client.post(
            "/api/shipping/rates", json={"order_id": order_id, **extra}, headers=seller.headers
        )
        assert rated.status_code == 422, rated.text
    rates = await client.post(
        "/api/shipping/rates", json={"order_id": order_id}, headers=seller.headers
    )
    assert rates.status_code == 200, rates.text
    cheapest = min(rates.json()["rates"], key=lambda r: float(r["amount"]))
    for extra in ({"insured_value": PRICE}, {"signature_confirmation": "ADULT"}):
        bought = await client.post(
            "/api/shipping/purchase-label",
            json={"order_id": order_id, "rate_id": cheapest["rate_id"], **extra},
            headers=seller.headers,
        )
        assert bought.status_code == 422, bought.text
    bought = await client.post(
        "/api/shipping/purchase-label",
        json={"order_id": order_id, "rate_id": cheapest["rate_id"]},
        headers=seller.headers,
    )
    assert bought.status_code == 202, bought.text
    return rates.json()["rates"]


# Insured for the server's quote; no signature below signature_above_usd ($500).
SERVER_EXTRA = {"insurance": {"amount": SERVER_PRICE, "currency": "USD", "content": "Used phone"}}


async def test_the_shippo_server_is_told_only_the_servers_price(
    client, resources, settings, make_user, run_jobs, shippo_server
):
    settings.shippo_api_key = TOKEN
    settings.shippo_base_url = shippo_server.url
    settings.shippo_timeout_seconds = 5
    seller = await make_user(wallet_address=wallet("shippo"))
    order_id = await _continued(client, seller)
    await _client_values_refused(client, seller, order_id)
    await run_jobs()

    shipments = [body for *_, body in shippo_server.calls("POST", "/shipments")]
    assert shipments and all(s["extra"] == SERVER_EXTRA for s in shipments)
    assert all(s["metadata"] == f"order:{order_id}" for s in shipments)
    [label] = shippo_server.labels_bought()
    assert label["metadata"] == f"order:{order_id}"
    every_request = json.dumps([body for *_, body in shippo_server.state.requests])
    assert PRICE not in every_request and "ADULT" not in every_request


async def test_the_sandbox_label_records_only_the_servers_price(
    client, resources, make_user, run_jobs
):
    seller = await make_user(wallet_address=wallet("sandbox"))
    order_id = await _continued(client, seller)
    await _client_values_refused(client, seller, order_id)
    await run_jobs()

    async with resources.sessionmaker() as session:
        recorded = list(await session.scalars(select(SandboxObject)))
    labels = [
        o for o in recorded if o.kind == "transaction" and o.data["metadata"] == f"order:{order_id}"
    ]
    assert len(labels) == 1 and labels[0].data["extra"] == SERVER_EXTRA
    assert PRICE not in json.dumps([o.data for o in recorded])
    async with resources.sessionmaker() as session:
        order = await session.get(Order, uuid.UUID(order_id))
    assert order is not None and order.status is S.AWAITING_SHIPMENT
    assert str(order.quoted_price_usd) == SERVER_PRICE
