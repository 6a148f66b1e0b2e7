"""Issue 15, point 6: one seller's flow (sign in, order, buy a label that the worker's job
completes) seen through the three windows operations has on it: /metrics moving, one access
line per request, and the flow's traces at an OTLP receiver."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from refit import tracing
from tests.auth.wallets import bearer, sign_in
from tests.observability.conftest import scrape, value
from tests.orders.helpers import DEVICE
from tests.shipping.conftest import HOME
from tests.shipping.helpers import buy, quote

LABEL_TASK = "shipping.purchase_label"
SERVER, CLIENT, CONSUMER = 2, 3, 5  # OTLP span kinds


def recording_request_ids(client: httpx.AsyncClient) -> list[str]:
    """Every request id the client hears back, in order (/metrics scrapes included)."""
    seen: list[str] = []

    async def record(response: httpx.Response) -> None:
        seen.append(response.headers["x-request-id"])

    client.event_hooks["response"].append(record)
    return seen


async def sell_and_buy_label(client: httpx.AsyncClient, **purchase_headers: str) -> Any:
    """Sign in with a wallet, order a device, buy its label: the purchase's response."""
    seller = bearer((await sign_in(client))["access_token"])
    address = await client.post("/api/shipping/addresses", json=HOME, headers=seller)
    assert address.status_code == 201, address.text
    offer = await client.post("/api/quotes", json=DEVICE, headers=seller)
    assert offer.status_code == 201, offer.text
    created = await client.post(
        "/api/orders/create",
        json={"quote_id": offer.json()["quote_id"], "shipping_address_id": address.json()["id"]},
        headers=seller,
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]

    class Seller:
        headers = seller

    rate = (await quote(client, Seller, order_id))[0]
    bought = await buy(client, Seller, order_id, rate["rate_id"], **purchase_headers)
    assert bought.status_code == 202, bought.text
    return bought


async def test_metrics_access_lines_and_traces_follow_a_label_purchase(
    otlp, json_log, client, run_jobs
):
    request_ids = recording_request_ids(client)
    before = await scrape(client)

    bought = await sell_and_buy_label(client)
    waiting = await scrape(client)
    await run_jobs()
    after = await scrape(client)

    # /metrics: HTTP, queue (depth, then the job's outcome) and label series moved.
    created = {"method": "POST", "route": "/api/orders/create", "status": "201"}
    assert value(after, "refit_http_requests_total", **created) == (
        value(before, "refit_http_requests_total", **created) + 1
    )
    assert value(waiting, "refit_queue_jobs", task=LABEL_TASK, status="todo") == 1
    assert value(after, "refit_queue_jobs", task=LABEL_TASK, status="todo") == 0
    assert value(after, "refit_workers_alive") >= 0 and value(after, "refit_database_metrics_up")
    succeeded = {"task": LABEL_TASK, "outcome": "succeeded"}
    assert value(after, "refit_jobs_total", **succeeded) == (
        value(before, "refit_jobs_total", **succeeded) + 1
    )
    assert value(after, "refit_label_purchases_total", outcome="bought") == (
        value(before, "refit_label_purchases_total", outcome="bought") + 1
    )

    # The access log: exactly one line per request, whatever else the request logged.
    lines = json_log()
    access = Counter(line["request_id"] for line in lines if line["event"] == "http.request")
    assert len(request_ids) >= 9 and len(set(request_ids)) == len(request_ids)
    assert {request_id: access[request_id] for request_id in request_ids} == dict.fromkeys(
        request_ids, 1
    )
    purchase_line = next(
        line
        for line in lines
        if line["event"] == "http.request" and line["route"] == "/api/shipping/purchase-label"
    )
    assert purchase_line["status"] == 202 and purchase_line["seller_id"]
    # The job's own lines carry the id of the request that deferred it.
    job_lines = [line for line in lines if line.get("task") == LABEL_TASK]
    assert job_lines
    assert {line.get("request_id") for line in job_lines} == {bought.headers["x-request-id"]}

    # Traces reached the receiver: the request, its SQL, and the label job in the same trace.
    tracing.flush()
    assert otlp.posts >= 1
    spans = otlp.spans
    purchase = next(
        span
        for span in spans
        if span.kind == SERVER
        and span.attributes.get("http.route") == "/api/shipping/purchase-label"
    )
    in_trace = [span for span in spans if span.trace_id == purchase.trace_id]
    assert any(span.attributes.get("db.system") == "postgresql" for span in in_trace)
    job = next(span for span in in_trace if span.name == f"job {LABEL_TASK}")
    assert job.kind == CONSUMER and job.service == "refit"
    # The job's SQL is its own child spans.
    assert any(
        span.parent_span_id == job.span_id and span.attributes.get("db.system") == "postgresql"
        for span in in_trace
    )
    # No query string, no token in any span.
    token_free = repr([span.attributes for span in spans])
    assert "Bearer" not in token_free and "?" not in str(
        [span.attributes.get("http.target", "") for span in spans]
    )
