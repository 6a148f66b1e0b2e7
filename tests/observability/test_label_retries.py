"""A label job against a Shippo-speaking server that refuses once: the job's outcomes
(retried, then succeeded) counted by task, and its calls to the carrier traced as outgoing
HTTP spans inside the job's span, without their query strings."""

from __future__ import annotations

from refit import tracing
from tests.observability.conftest import scrape, value
from tests.shipping.helpers import buy, make_due, quote

LABEL_TASK = "shipping.purchase_label"
CLIENT = 3  # OTLP span kind


async def test_a_retried_label_job_is_counted_and_its_carrier_calls_traced(
    otlp, shippo_settings, shippo_server, client, make_user, make_order, resources, run_jobs
):
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    shippo_server.fail_next_transactions(1)
    before = await scrape(client)
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202

    await run_jobs()
    assert await make_due(resources) == 1
    await run_jobs()

    after = await scrape(client)
    for outcome in ("retried", "succeeded"):
        labels = {"task": LABEL_TASK, "outcome": outcome}
        assert value(after, "refit_jobs_total", **labels) == (
            value(before, "refit_jobs_total", **labels) + 1
        )
    assert value(after, "refit_label_purchases_total", outcome="bought") == (
        value(before, "refit_label_purchases_total", outcome="bought") + 1
    )

    tracing.flush()
    jobs = [span for span in otlp.spans if span.name == f"job {LABEL_TASK}"]
    assert len(jobs) == 2 and len({span.trace_id for span in jobs}) == 1
    # Outgoing HTTP: client spans with a URL (SQL spans are client spans too, without one).
    urls = [
        span.attributes.get("url.full") or span.attributes.get("http.url")
        for span in otlp.spans
        if span.kind == CLIENT and span.parent_span_id in {job.span_id for job in jobs}
    ]
    calls = [url for url in urls if url]
    assert calls, "no outgoing HTTP span under the label job"
    assert all(url.startswith(shippo_server.url) and "?" not in url for url in calls)
    assert any(url.endswith("/transactions") for url in calls)
