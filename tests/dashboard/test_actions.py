"""The dashboard's moves are the services' moves: recorded in the order's history with the
operator as actor, confirmed on the page, and refused as pages when the state forbids them."""

from __future__ import annotations

import re
import secrets
import uuid
from decimal import Decimal

from sqlalchemy import select

from refit.models import OrderStatusHistory
from refit.models.inspection import EvidencePhoto
from tests.admin.helpers import make_operator
from tests.dashboard.helpers import csrf_of, sign_in, signed_in_operator
from tests.inspection.helpers import (
    inspecting_order,
    jpeg_with_gps,
    noise_png,
    operator,
    shipped_order,
    verdict,
)
from tests.payouts.conftest import order_row, payout_row


async def _history(resources, order_id: str) -> list[tuple[str, str, str | None]]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(OrderStatusHistory)
            .where(OrderStatusHistory.order_id == uuid.UUID(order_id))
            .order_by(OrderStatusHistory.created_at, OrderStatusHistory.id)
        )
        return [(h.status.value, h.actor, h.notes) for h in rows]


async def test_an_admin_cancels_with_a_reason_in_the_history(client, resources, make_user):
    order_id = await shipped_order(client, resources, await make_user())
    admin, csrf = await signed_in_operator(resources, client, "admin")
    done = await client.post(
        f"/admin/orders/{order_id}/cancel", data={"csrf": csrf, "reason": "seller phoned"}
    )
    assert done.status_code == 303
    page = await client.get(done.headers["location"])
    assert "Order cancelled." in page.text
    assert admin.username in page.text
    assert (await _history(resources, order_id))[-1] == (
        "cancelled",
        f"operator:{admin.id}",
        "seller phoned",
    )
    # Twice is a conflict, shown on the order page itself (the reason kept: test_forms_keep).
    again = await client.post(f"/admin/orders/{order_id}/cancel", data={"csrf": csrf})
    assert again.status_code == 409 and "text/html" in again.headers["content-type"]
    assert 'id="cancel-reason-error"' in again.text and 'id="order-title"' in again.text


async def test_photos_from_the_order_page_are_cleaned_evidence(client, resources, make_user):
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    _, csrf = await signed_in_operator(resources, client, "inspector")
    done = await client.post(
        f"/admin/orders/{order_id}/photos",
        data={"csrf": csrf},
        files=[("photos", ("back.jpg", jpeg_with_gps(), "image/jpeg"))],
    )
    assert done.status_code == 303, done.text
    page = (await client.get(done.headers["location"])).text
    assert "Photos added to the evidence." in page
    url = re.search(r'<img src="(/api/evidence/[^"]+)"', page)
    assert url
    photo = await client.get(url.group(1).replace("&amp;", "&"))
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert b"SpyCam" not in photo.content
    # A phone photo is larger than an ordinary form may be: the upload's own limit applies.
    large = noise_png(700)
    assert len(large) > resources.settings.max_body_bytes
    more = await client.post(
        f"/admin/orders/{order_id}/photos",
        data={"csrf": csrf},
        files=[("photos", ("big.png", large, "image/png"))],
    )
    assert more.status_code == 303, more.text
    none = await client.post(
        f"/admin/orders/{order_id}/photos",
        data={"csrf": csrf},
        files=[("photos", ("", b"", "application/octet-stream"))],
    )
    assert none.status_code == 422 and "at least one photo" in none.text
    async with resources.sessionmaker() as session:
        assert len((await session.scalars(select(EvidencePhoto))).all()) == 2


async def test_a_verdict_the_service_refuses_is_shown_and_nothing_is_kept(
    client, resources, make_user
):
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    _, csrf = await signed_in_operator(resources, client, "inspector")
    form = {"csrf": csrf, "grade": "good", "screen": "ok", "imei": "490154203237519"}
    refused = await client.post(
        f"/admin/orders/{order_id}/inspect",
        data={**form, "powers_on": "yes", "activation_lock_off": "yes"},
        files=[("photos", ("a.jpg", jpeg_with_gps(), "image/jpeg"))],
    )
    assert refused.status_code == 422 and "check digit" in refused.text
    assert (await order_row(resources, order_id)).status == "inspecting"
    async with resources.sessionmaker() as session:
        assert (await session.scalars(select(EvidencePhoto))).all() == []
    # An inspector cannot override the catalog's price.
    override = await client.post(
        f"/admin/orders/{order_id}/inspect",
        data={
            **form,
            "imei": "490154203237518",
            "powers_on": "yes",
            "activation_lock_off": "yes",
            "override_price_usd": "999",
            "override_reason": "x",
        },
    )
    assert override.status_code == 403
    revised = await client.post(
        f"/admin/orders/{order_id}/inspect",
        data={
            **form,
            "grade": "fair",
            "imei": "490154203237518",
            "powers_on": "yes",
            "activation_lock_off": "yes",
            "notes": "Dent on the corner",
        },
    )
    assert revised.status_code == 303
    order = await order_row(resources, order_id)
    assert order.status == "offer_pending" and order.final_price_usd == Decimal("338.00")
    assert (await _history(resources, order_id))[-1][2] == "Dent on the corner"


async def test_a_payout_over_the_cap_waits_for_another_admin(
    client, resources, settings, make_user
):
    settings.payout_max_usd = Decimal("100")
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    inspected = await client.post(
        f"/api/admin/orders/{order_id}/inspect",
        json=verdict(grade="flawless"),
        headers=inspector.headers,
    )
    assert inspected.status_code == 200
    # The second admin predates the request: one made after it may not approve it (four-eyes).
    second_password = secrets.token_urlsafe(16)
    second = await make_operator(resources, "admin", password=second_password)
    _, csrf = await signed_in_operator(resources, client, "admin")
    asked = await client.post(f"/admin/orders/{order_id}/pay", data={"csrf": csrf})
    assert asked.status_code == 303
    page = (await client.get(asked.headers["location"])).text
    assert "a second admin approves" in page
    payout = await payout_row(resources, order_id)
    assert payout.status == "awaiting_approval"
    # Not offered to the admin who asked, and refused if they try.
    assert f"/admin/payouts/{payout.id}/approve" not in page
    self_approved = await client.post(f"/admin/payouts/{payout.id}/approve", data={"csrf": csrf})
    assert self_approved.status_code == 403
    listed = (await client.get("/admin/payouts")).text
    assert re.search(r'id="awaiting-approval".*?/admin/orders/' + order_id, listed, re.S)

    client.cookies.clear()
    assert (await sign_in(client, second.username, second_password)).status_code == 303
    csrf = csrf_of((await client.get("/admin/")).text)
    page = (await client.get(f"/admin/orders/{order_id}")).text
    assert f"/admin/payouts/{payout.id}/approve" in page
    approved = await client.post(f"/admin/payouts/{payout.id}/approve", data={"csrf": csrf})
    assert approved.status_code == 303
    payout = await payout_row(resources, order_id)
    assert (payout.status, payout.approved_by) == ("pending", f"operator:{second.id}")
