"""`POST /api/migrate/localstorage`: a seller uploads their own browser's export, once or
again; never another wallet's data; a broken or oversized export changes nothing."""

from __future__ import annotations

import datetime as dt
import json

from bench.localstorage_exports import wallet
from tests.localstorage.helpers import count, example, snapshot

URL = "/api/migrate/localstorage"


async def test_a_seller_uploads_their_own_export_and_again_changes_nothing(
    client, resources, make_user
):
    seller = await make_user(wallet_address=example()["wallet_address"])
    response = await client.post(URL, json=example(), headers=seller.headers)
    assert response.status_code == 200, response.text
    summary = response.json()
    continuable = summary.pop("continuable_order_ids")
    assert summary == {
        "addresses_created": 2,
        "orders_created": 4,
        "addresses_skipped": 0,
        "orders_skipped": 0,
        "addresses_left_out": [],
        "tracking_numbers_dropped": 1,
        "payment_signatures_dropped": 1,
    }
    rows = await snapshot(resources)
    # The two the browser had not finished: pending, and shipped.
    assert sorted(o["imported_status"] for o in rows["orders"] if str(o["id"]) in continuable) == [
        "pending",
        "shipped",
    ]

    again = await client.post(URL, json=example(), headers=seller.headers)
    assert again.status_code == 200, again.text
    assert again.json()["orders_skipped"] == 4 and again.json()["orders_created"] == 0
    assert await snapshot(resources) == rows

    # The seller reads them like any order: history (status imported) showing the status
    # their browser showed, with the imported entry in their history.
    page = (await client.get("/api/orders", headers=seller.headers)).json()
    assert {o["status"] for o in page["items"]} == {"imported"}
    assert sorted(o["imported_status"] for o in page["items"]) == [
        "cancelled",
        "completed",
        "pending",
        "shipped",
    ]
    order_id = page["items"][0]["id"]
    detail = (await client.get(f"/api/orders/{order_id}", headers=seller.headers)).json()
    assert [(h["status"], h["actor"], h["notes"]) for h in detail["status_history"]] == [
        ("imported", "user", "imported")
    ]
    entry = rows["history"][0]
    assert entry["actor"] == f"user:{seller.id}"


async def test_an_upload_cannot_write_another_wallets_data(client, resources, make_user):
    victim_wallet = wallet("victim")
    victim = await make_user(wallet_address=victim_wallet)
    attacker = await make_user(wallet_address=wallet("attacker"))
    before = await snapshot(resources)

    response = await client.post(
        URL, json=example(wallet_address=victim_wallet), headers=attacker.headers
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "wallet_mismatch"
    assert await snapshot(resources) == before

    # A wallet nobody signed in with yet is refused the same way: no seller is made for it.
    response = await client.post(
        URL, json=example(wallet_address=wallet("stranger")), headers=attacker.headers
    )
    assert response.status_code == 403
    assert await snapshot(resources) == before

    # The victim's export (their parcel's tracking number in it) copied into the attacker's:
    # tracking numbers are never taken from an export, so the carrier's updates for the
    # victim's parcel can reach no imported order; the attacker gets history of their own.
    await client.post(URL, json=example(wallet_address=victim_wallet), headers=victim.headers)
    victims = await snapshot(resources)
    copied = await client.post(
        URL, json=example(wallet_address=wallet("attacker")), headers=attacker.headers
    )
    assert copied.status_code == 200, copied.text
    assert copied.json()["orders_created"] == 4
    assert copied.json()["tracking_numbers_dropped"] == 1
    after = await snapshot(resources)
    assert [o for o in after["orders"] if o["user_id"] == victim.id] == [
        o for o in victims["orders"] if o["user_id"] == victim.id
    ]
    assert sum(o["user_id"] == attacker.id for o in after["orders"]) == 4
    assert all(o["tracking_number"] is None for o in after["orders"])


async def test_a_broken_upload_lists_every_problem_and_changes_nothing(
    client, resources, make_user
):
    seller = await make_user(wallet_address=example()["wallet_address"])
    doc = example()
    doc["orders"][1]["quote"]["price_sol"] = "-1"
    doc["orders"][3]["status"] = "lost_in_space"
    before = await snapshot(resources)

    response = await client.post(URL, json=doc, headers=seller.headers)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_export"
    assert [p["place"] for p in body["problems"]] == [
        "orders[1].quote.price_sol",
        "orders[3].status",
    ]
    assert await snapshot(resources) == before

    response = await client.post(
        URL, content=b"{not json", headers={**seller.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["problems"][0]["place"] == "line 1 column 2"


async def test_an_upload_over_the_limit_is_refused(client, resources, make_user):
    seller = await make_user(wallet_address=example()["wallet_address"])
    doc = example()
    doc["orders"][0]["device"]["details"] = {
        "notes": "x" * resources.settings.localstorage_upload_max_bytes
    }
    response = await client.post(
        URL, content=json.dumps(doc), headers={**seller.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert await count(resources, "SELECT count(*) FROM orders") == 0


async def test_times_that_have_not_come_yet_are_refused(client, resources, make_user):
    """A browser's clock may be a little ahead, not years: an order created at the last
    microsecond of year 9999 (which once made the order list's next cursor name that order
    again) or a history step a week ahead is refused with its place, and nothing changes.
    A quote's expiry may lie ahead."""
    seller = await make_user(wallet_address=example()["wallet_address"])
    doc = example()
    doc["orders"][0]["created_at"] = "9999-12-31T23:59:59.999999Z"
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).isoformat()
    doc["orders"][1]["history"] = [{"status": doc["orders"][1]["status"], "at": ahead}]
    doc["orders"][2]["quote"]["expires_at"] = ahead
    before = await snapshot(resources)

    response = await client.post(URL, json=doc, headers=seller.headers)
    assert response.status_code == 422, response.text
    assert [p["place"] for p in response.json()["problems"]] == [
        "orders[0].created_at",
        "orders[1].history[0].at",
    ]
    assert await snapshot(resources) == before

    doc = example()
    doc["orders"][0]["created_at"] = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    doc["orders"][2]["quote"]["expires_at"] = ahead
    response = await client.post(URL, json=doc, headers=seller.headers)
    assert response.status_code == 200, response.text  # an hour ahead: a clock off
