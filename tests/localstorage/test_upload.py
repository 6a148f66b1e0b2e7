"""`POST /api/migrate/localstorage`: a seller uploads their own browser's export, once or
again; never another wallet's data; a broken or oversized export changes nothing."""

from __future__ import annotations

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
    assert response.json() == {
        "addresses_created": 2,
        "orders_created": 4,
        "addresses_skipped": 0,
        "orders_skipped": 0,
    }
    rows = await snapshot(resources)

    again = await client.post(URL, json=example(), headers=seller.headers)
    assert again.status_code == 200, again.text
    assert again.json()["orders_skipped"] == 4 and again.json()["orders_created"] == 0
    assert await snapshot(resources) == rows

    # The seller reads them like any order, with the imported entry in their history.
    page = (await client.get("/api/orders", headers=seller.headers)).json()
    assert sorted(o["status"] for o in page["items"]) == [
        "cancelled",
        "completed",
        "pending",
        "shipped",
    ]
    order_id = page["items"][0]["id"]
    detail = (await client.get(f"/api/orders/{order_id}", headers=seller.headers)).json()
    assert [(h["status"], h["actor"], h["notes"]) for h in detail["status_history"]] == [
        (page["items"][0]["status"], "user", "imported")
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

    # The victim's parcels' tracking numbers in the attacker's export would let the carrier's
    # updates for the victim's parcel reach the attacker's copy: refused, nothing written.
    await client.post(URL, json=example(wallet_address=victim_wallet), headers=victim.headers)
    victims = await snapshot(resources)
    copied = await client.post(
        URL, json=example(wallet_address=wallet("attacker")), headers=attacker.headers
    )
    assert copied.status_code == 422, copied.text
    assert copied.json()["code"] == "invalid_export"
    assert [p["message"] for p in copied.json()["problems"]] == [
        "this tracking number belongs to another order"
    ]
    assert await snapshot(resources) == victims

    # The same browser ids under the attacker's own wallet, with their own parcels, are the
    # attacker's own records: they neither skip nor touch the victim's.
    mine = example(wallet_address=wallet("attacker"))
    for order in mine["orders"]:
        if (order.get("label") or {}).get("tracking_number"):
            order["label"]["tracking_number"] = "9400111899223197428499"
    own = await client.post(URL, json=mine, headers=attacker.headers)
    assert own.status_code == 200 and own.json()["orders_created"] == 4
    after = await snapshot(resources)
    assert [o for o in after["orders"] if o["user_id"] == victim.id] == [
        o for o in victims["orders"] if o["user_id"] == victim.id
    ]
    assert sum(o["user_id"] == attacker.id for o in after["orders"]) == 4


async def test_a_broken_upload_lists_every_problem_and_changes_nothing(
    client, resources, make_user
):
    seller = await make_user(wallet_address=example()["wallet_address"])
    doc = example()
    doc["orders"][1]["quote"]["price_sol"] = "-1"
    doc["orders"][3]["status"] = "returning"
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
