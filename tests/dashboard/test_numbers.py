"""Done-when 3: the numbers page draws its charts from the orders made here."""

from __future__ import annotations

import re

from tests.dashboard.helpers import signed_in_operator
from tests.inspection.helpers import inspecting_order, operator, verdict
from tests.orders.helpers import place_order, quote


def _svg(html: str, chart: str) -> str:
    found = re.search(rf'<svg id="{chart}".*?</svg>', html, re.S)
    assert found, chart
    return found.group(0)


async def test_the_charts_count_the_orders_made_here(client, resources, make_user):
    inspector = await operator(resources, "inspector")
    await place_order(client, resources, await make_user())  # stays pending
    as_quoted = await inspecting_order(client, resources, await make_user(), inspector)
    revised = await inspecting_order(client, resources, await make_user(), inspector)
    await quote(client, await make_user())  # a quote nobody ordered
    for order_id, grade in ((as_quoted, "flawless"), (revised, "fair")):
        done = await client.post(
            f"/api/admin/orders/{order_id}/inspect",
            json=verdict(grade=grade),
            headers=inspector.headers,
        )
        assert done.status_code == 200, done.text
    await signed_in_operator(resources, client, "admin")

    html = (await client.get("/admin/numbers")).text

    per_day = _svg(html, "orders-per-day")
    # Today's bar: three orders, one per status they are in now.
    assert per_day.count('data-total="3"') == 1
    assert per_day.count('data-total="0"') == 13
    for status in ("pending", "inspecting", "offer_pending"):
        assert re.search(rf"<title>[^<]*: 1 {status}</title>", per_day), status
    funnel = _svg(html, "funnel")
    steps = dict(re.findall(r'data-step="(\w+)" data-value="(\d+)"', funnel))
    assert steps == {
        "quote": "4",
        "order": "3",
        "label": "0",
        "shipped": "2",
        "received": "2",
        "paid": "0",
    }
    assert "75% of quotes" in funnel
    stays = _svg(html, "median-stay")
    # Every order that moved left pending, and both received orders left received.
    assert re.search(r'data-step="pending"', stays)
    assert re.search(r'data-step="received"[^>]*>.*?2 stays', stays, re.S)
    assert '<p class="big" id="revised-rate">50%</p>' in html
    assert "1 of 2 inspections offered less than the quote" in html
    assert 'id="payouts-total">$0.00 paid' in html
