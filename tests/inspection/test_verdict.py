"""The verdict through the operators' API: as quoted, a revised offer, home; who may override;
what a bad input leaves behind (nothing)."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text

from refit.models import Order
from refit.models.inspection import Inspection
from tests.inspection.helpers import (
    BAD_IMEI,
    CHECKLIST,
    FAIR_PRICE,
    QUOTED,
    inspecting_order,
    operator,
    shipped_order,
    story,
    verdict,
)


async def _inspect(client, order_id, op, **changes):
    return await client.post(
        f"/api/admin/orders/{order_id}/inspect", json=verdict(**changes), headers=op.headers
    )


async def _order_row(resources, order_id) -> Order:
    async with resources.sessionmaker() as session:
        order = await session.get(Order, uuid.UUID(order_id))
        assert order is not None
        return order


async def _inspection_count(resources, order_id) -> int:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(Inspection.id).where(Inspection.order_id == uuid.UUID(order_id))
        )
        return len(rows.all())


async def test_receive_without_a_carrier_scan_goes_through_shipped(client, resources, make_user):
    seller = await make_user()
    op = await operator(resources)
    order_id = await shipped_order(client, resources, seller)

    response = await client.post(f"/api/admin/orders/{order_id}/receive", headers=op.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "received"
    assert response.json()["received_at"] is not None

    history = (await story(client, order_id, op))["history"]
    moves = [(h["from_status"], h["status"], h["actor"]) for h in history[-2:]]
    assert moves == [
        ("awaiting_shipment", "shipped", op.actor),
        ("shipped", "received", op.actor),
    ]
    # Received already: receiving again is a state conflict, not a second pair of moves.
    again = await client.post(f"/api/admin/orders/{order_id}/receive", headers=op.headers)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "invalid_transition"


async def test_graded_as_quoted_the_quoted_price_stands(client, resources, make_user):
    seller = await make_user()
    op = await operator(resources)
    order_id = await inspecting_order(client, resources, seller, op)

    # Better than described: the catalog says $520, the quote ($442) is what is paid.
    response = await _inspect(client, order_id, op, grade="flawless")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["outcome"] == "as_quoted"
    assert body["status"] == "inspecting"
    assert body["final_price_usd"] == QUOTED
    assert body["inspection"]["catalog_price_usd"] == "520.00"
    assert body["inspection"]["operator_id"] == str(op.id)

    order = await _order_row(resources, order_id)
    assert str(order.final_price_usd) == QUOTED
    assert order.status == "inspecting"
    # Every move of the operator is in the history under their id.
    history = (await story(client, order_id, op))["history"]
    assert [
        h["actor"] for h in history if h["status"] in ("shipped", "received", "inspecting")
    ] == [op.actor] * 3
    # The seller is told, by the existing mail job, with the new template.
    async with resources.sessionmaker() as session:
        templates = (
            await session.scalars(
                text(
                    "SELECT args ->> 'template' FROM procrastinate_jobs "
                    "WHERE task_name = 'notifications.notify_user' "
                    "AND args -> 'context' ->> 'order_id' = :order_id"
                ),
                {"order_id": order_id},
            )
        ).all()
    assert "order_inspected" in templates
    # Given once: a second verdict is refused.
    again = await _inspect(client, order_id, op, grade="fair")
    assert again.status_code == 409
    assert again.json()["code"] == "already_inspected"


async def test_unbuyable_goes_home(client, resources, make_user):
    seller = await make_user()
    op = await operator(resources)
    order_id = await inspecting_order(client, resources, seller, op)

    locked = {**CHECKLIST, "activation_lock_off": False}
    response = await _inspect(client, order_id, op, checklist=locked)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "unbuyable"
    assert response.json()["status"] == "returning"
    assert response.json()["final_price_usd"] is None
    order = await _order_row(resources, order_id)
    assert order.status == "returning" and order.final_price_usd is None
    last = (await story(client, order_id, op))["history"][-1]
    assert (last["from_status"], last["status"], last["actor"]) == (
        "inspecting",
        "returning",
        op.actor,
    )
    assert "activation lock" in last["notes"]


async def test_a_dead_device_is_only_bought_as_broken(client, resources, make_user):
    seller = await make_user()
    op = await operator(resources)
    dead = {**CHECKLIST, "powers_on": False, "screen": "dead", "battery_health_pct": None}
    first = await inspecting_order(client, resources, seller, op)
    response = await _inspect(client, first, op, grade="good", checklist=dead)
    assert response.json()["outcome"] == "unbuyable"

    second = await inspecting_order(client, resources, seller, op)
    response = await _inspect(client, second, op, grade="broken", checklist=dead)
    assert response.json()["outcome"] == "revised_offer"
    assert response.json()["final_price_usd"] == "78.00"  # 520 x 0.15


async def test_only_an_admin_overrides_the_price_and_it_is_recorded(client, resources, make_user):
    seller = await make_user()
    inspector = await operator(resources, "inspector")
    admin = await operator(resources, "admin")
    order_id = await inspecting_order(client, resources, seller, inspector)

    refused = await _inspect(
        client, order_id, inspector, override_price_usd="400.00", override_reason="mint box"
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "operator_forbidden"
    assert await _inspection_count(resources, order_id) == 0
    order = await _order_row(resources, order_id)
    assert order.status == "inspecting" and order.final_price_usd is None

    no_reason = await _inspect(client, order_id, admin, override_price_usd="400.00")
    assert no_reason.status_code == 422
    assert no_reason.json()["code"] == "override_reason_required"
    assert await _inspection_count(resources, order_id) == 0

    # A final price must be above zero: an accepted $0 offer could never be paid or end.
    nothing = await _inspect(
        client, order_id, admin, override_price_usd="0.00", override_reason="worthless"
    )
    assert nothing.status_code == 422
    assert nothing.json()["code"] == "override_price_not_positive"
    assert await _inspection_count(resources, order_id) == 0

    # The catalog says $338 for "fair"; the admin pays $400 (still below the quote).
    response = await _inspect(
        client,
        order_id,
        admin,
        grade="fair",
        override_price_usd="400.00",
        override_reason="original box and charger",
    )
    assert response.status_code == 200, response.text
    inspection = response.json()["inspection"]
    assert inspection["catalog_price_usd"] == FAIR_PRICE
    assert inspection["override_price_usd"] == "400.00"
    assert inspection["override_reason"] == "original box and charger"
    assert inspection["override_by"] == str(admin.id)
    assert response.json()["final_price_usd"] == "400.00"
    assert response.json()["status"] == "offer_pending"
    assert str((await _order_row(resources, order_id)).final_price_usd) == "400.00"


async def test_bad_input_changes_nothing(client, resources, make_user):
    seller = await make_user()
    op = await operator(resources)
    order_id = await inspecting_order(client, resources, seller, op)

    cases = [
        ({"imei": BAD_IMEI}, 422, "invalid_imei"),
        ({"imei": "12345"}, 422, "invalid_imei"),
        ({"imei": None, "serial": None}, 422, "device_identity_required"),
        ({"grade": "pristine"}, 422, "unknown_condition"),
        ({"storage": "64GB"}, 422, "unknown_storage"),
        ({"checklist": {**CHECKLIST, "battery_health_pct": 140}}, 422, "validation_error"),
        ({"checklist": {**CHECKLIST, "screen": "shattered"}}, 422, "validation_error"),
        ({"final_price_usd": "999.00"}, 422, "validation_error"),
    ]
    for changes, status, code in cases:
        response = await _inspect(client, order_id, op, **changes)
        assert response.status_code == status, (changes, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code, changes
    assert await _inspection_count(resources, order_id) == 0
    order = await _order_row(resources, order_id)
    assert order.status == "inspecting" and order.final_price_usd is None

    # A serial number alone will do; an IMEI typed with separators too.
    response = await _inspect(client, order_id, op, imei="49-015420-323751-8", serial="F2LX")
    assert response.status_code == 200, response.text
    assert response.json()["inspection"]["imei"] == "490154203237518"


async def test_a_verdict_needs_an_order_in_inspection(client, resources, make_user):
    seller = await make_user()
    op = await operator(resources)
    order_id = await shipped_order(client, resources, seller)
    response = await _inspect(client, order_id, op)
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_order_state"
    unknown = await _inspect(client, str(uuid.uuid4()), op)
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "order_not_found"


async def test_an_idempotency_key_replays_the_verdict(client, resources, make_user):
    seller = await make_user()
    op = await operator(resources)
    order_id = await inspecting_order(client, resources, seller, op)
    headers = {**op.headers, "Idempotency-Key": "verdict-1"}
    body = verdict(grade="fair")
    first = await client.post(f"/api/admin/orders/{order_id}/inspect", json=body, headers=headers)
    assert first.status_code == 200, first.text
    again = await client.post(f"/api/admin/orders/{order_id}/inspect", json=body, headers=headers)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    other = await client.post(
        f"/api/admin/orders/{order_id}/inspect", json=verdict(grade="good"), headers=headers
    )
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
