"""Done-when 2: an inspector is shown no pay or cancel action, and a hand-made POST to them is
403 with nothing changed; a form posted without its CSRF token is 403 with nothing changed."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text

from refit.models import Order, OrderStatusHistory
from refit.models.payout import Payout
from refit.resources import Resources
from tests.dashboard.helpers import signed_in_operator
from tests.inspection.helpers import inspecting_order, operator, shipped_order, verdict


async def _state(resources: Resources, order_id: str) -> tuple[str, int, int, int]:
    """The order's status, its history rows, its payouts and the jobs queued in all."""
    async with resources.sessionmaker() as session:
        oid = uuid.UUID(order_id)
        order = await session.get(Order, oid)
        assert order is not None
        history = await session.scalar(
            select(func.count()).where(OrderStatusHistory.order_id == oid)
        )
        payouts = await session.scalar(select(func.count()).where(Payout.order_id == oid))
        jobs = await session.scalar(text("SELECT count(*) FROM procrastinate_jobs"))
        return order.status.value, int(history or 0), int(payouts or 0), int(jobs or 0)


async def _as_quoted(client, resources, make_user) -> str:
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    done = await client.post(
        f"/api/admin/orders/{order_id}/inspect",
        json=verdict(grade="flawless"),
        headers=inspector.headers,
    )
    assert done.status_code == 200 and done.json()["outcome"] == "as_quoted", done.text
    return order_id


async def test_an_inspector_is_offered_no_pay_or_cancel_and_is_refused_both(
    client, resources, make_user
):
    to_pay = await _as_quoted(client, resources, make_user)
    to_cancel = await shipped_order(client, resources, await make_user())
    _, csrf = await signed_in_operator(resources, client, "inspector")

    paid_page = await client.get(f"/admin/orders/{to_pay}")
    assert paid_page.status_code == 200
    assert f"/admin/orders/{to_pay}/pay" not in paid_page.text
    cancel_page = await client.get(f"/admin/orders/{to_cancel}")
    assert f"/admin/orders/{to_cancel}/cancel" not in cancel_page.text
    # What the inspector may do is there: receiving the parcel.
    assert f"/admin/orders/{to_cancel}/receive" in cancel_page.text

    before = {o: await _state(resources, o) for o in (to_pay, to_cancel)}
    pay = await client.post(f"/admin/orders/{to_pay}/pay", data={"csrf": csrf})
    assert pay.status_code == 403 and "text/html" in pay.headers["content-type"]
    assert "Only an admin" in pay.text
    cancel = await client.post(
        f"/admin/orders/{to_cancel}/cancel", data={"csrf": csrf, "reason": "test"}
    )
    assert cancel.status_code == 403
    assert {o: await _state(resources, o) for o in (to_pay, to_cancel)} == before

    # An admin is offered both.
    client.cookies.clear()
    await signed_in_operator(resources, client, "admin")
    assert f"/admin/orders/{to_pay}/pay" in (await client.get(f"/admin/orders/{to_pay}")).text
    shown = (await client.get(f"/admin/orders/{to_cancel}")).text
    assert f"/admin/orders/{to_cancel}/cancel" in shown


async def test_a_form_without_its_csrf_token_changes_nothing(client, resources, make_user):
    order_id = await shipped_order(client, resources, await make_user())
    to_pay = await _as_quoted(client, resources, make_user)
    _, csrf = await signed_in_operator(resources, client, "admin")
    before = await _state(resources, order_id)
    paid_before = await _state(resources, to_pay)

    # The real token with its last character changed (to one it is not: a token ending in
    # "0" made this "wrong" token the right one, 1 run in 16).
    altered = csrf[:-1] + ("1" if csrf.endswith("0") else "0")
    for data in ({}, {"csrf": "forged"}, {"csrf": altered}):
        refused = await client.post(f"/admin/orders/{order_id}/receive", data=data)
        assert refused.status_code == 403, data
        assert "text/html" in refused.headers["content-type"]
        assert "did not come from the dashboard" in refused.text
        pay = await client.post(f"/admin/orders/{to_pay}/pay", data=data)
        assert pay.status_code == 403
    assert await _state(resources, order_id) == before
    assert await _state(resources, to_pay) == paid_before

    # The same form with its token goes through, and says so.
    done = await client.post(f"/admin/orders/{order_id}/receive", data={"csrf": csrf})
    assert done.status_code == 303
    shown = await client.get(done.headers["location"])
    assert "Marked as received at the warehouse." in shown.text
    assert (await _state(resources, order_id))[0] == "received"
