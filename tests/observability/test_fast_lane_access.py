"""A hot GET answered by the fast lane (refit/fastlane.py) keeps what every request has:
the request id echoed, the Prometheus counter under the route's template, the access line
naming the seller."""

from __future__ import annotations

from refit.metrics import HTTP_REQUESTS
from tests.orders.helpers import place_order


async def test_the_lane_keeps_the_request_id_metrics_and_access_line(
    client, resources, make_user, json_log
):
    seller = await make_user()
    order = await place_order(client, resources, seller)
    route = "/api/orders/{order_id}"
    before = HTTP_REQUESTS.labels("GET", route, "200")._value.get()
    response = await client.get(
        f"/api/orders/{order['id']}", headers={**seller.headers, "X-Request-ID": "lane-1"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "lane-1"
    assert HTTP_REQUESTS.labels("GET", route, "200")._value.get() == before + 1
    (line,) = [
        line
        for line in json_log()
        if line["event"] == "http.request" and line.get("request_id") == "lane-1"
    ]
    assert line["route"] == route
    assert line["seller_id"] == str(seller.id)
    assert line["status"] == 200
