"""GET /api/admin/payouts: a cursor page `{items, next_cursor}` like every list, newest first,
with its status filter."""

from __future__ import annotations

from tests.payouts.conftest import as_quoted_order, pay


async def test_payouts_are_listed_in_cursor_pages_newest_first(
    client, resources, make_user, paying
):
    asked = []
    for _ in range(3):
        order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
        assert (await pay(client, order_id, paying.admin)).status_code == 202
        asked.append(order_id)
    newest_first = asked[::-1]
    headers = paying.inspector.headers  # any operator may read them

    first = await client.get("/api/admin/payouts", params={"limit": 2}, headers=headers)
    assert first.status_code == 200, first.text
    assert set(first.json()) == {"items", "next_cursor"}
    assert [p["order_id"] for p in first.json()["items"]] == newest_first[:2]
    cursor = first.json()["next_cursor"]
    assert cursor

    second = await client.get(
        "/api/admin/payouts", params={"limit": 2, "cursor": cursor}, headers=headers
    )
    assert [p["order_id"] for p in second.json()["items"]] == newest_first[2:]
    assert second.json()["next_cursor"] is None

    # The filter holds across pages: none has been sent yet, all three wait.
    pending = await client.get(
        "/api/admin/payouts", params={"status": "pending", "limit": 100}, headers=headers
    )
    assert [p["order_id"] for p in pending.json()["items"]] == newest_first
    finalized = await client.get(
        "/api/admin/payouts", params={"status": "finalized"}, headers=headers
    )
    assert finalized.json() == {"items": [], "next_cursor": None}


async def test_a_cursor_not_ours_and_a_seller_are_refused(client, make_user, paying):
    bad = await client.get(
        "/api/admin/payouts", params={"cursor": "not-a-cursor"}, headers=paying.admin.headers
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["code"] == "invalid_cursor"

    too_many = await client.get(
        "/api/admin/payouts", params={"limit": 101}, headers=paying.admin.headers
    )
    assert too_many.status_code == 422

    seller = await make_user()
    refused = await client.get("/api/admin/payouts", headers=seller.headers)
    assert refused.status_code == 401
