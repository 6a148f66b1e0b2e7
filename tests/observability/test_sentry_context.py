"""Sentry hears of a job that failed for good with the job's and the request's context, and
nothing personal: no local variables, no request body or query string, no user."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from refit import queue
from refit.error_reports import init_sentry
from refit.logs import RequestMiddleware, scrub_sentry_event
from refit.transactions import service_transaction

FAILING_TASK = "tests.observability.fails_for_good"


@queue.queue.task(name=FAILING_TASK)
async def fails_for_good(order_id: str) -> None:
    # A local Sentry must never see (built at run time: Sentry does send source lines).
    seller_email = "@".join(("ada", "example.com"))
    raise RuntimeError(f"the carrier refused order {order_id} ({len(seller_email)})")


class Captured(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(event)


@pytest.fixture
def sentry(settings) -> Iterator[Captured]:
    settings.sentry_dsn = "http://public@127.0.0.1:9/1"  # never reached: the transport is ours
    init_sentry(settings)
    captured = Captured()
    sentry_sdk.get_client().transport = captured
    yield captured
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


async def test_a_job_failing_for_good_reaches_sentry_with_its_context_only(
    sentry, resources, run_jobs
):
    app = FastAPI()

    @app.post("/defer")
    async def defer_one() -> dict[str, int | None]:
        async with service_transaction(job=True) as session:
            return {"job": await queue.defer(session, FAILING_TASK, order_id="o-1")}

    app.add_middleware(RequestMiddleware)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        deferred = await http.post(
            "/defer?ticket=secret-ticket", headers={"X-Request-ID": "req-s1"}
        )
    job_id = deferred.json()["job"]

    await run_jobs()

    [event] = [e for e in sentry.events if e.get("exception")]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["tags"]["task"] == FAILING_TASK
    assert event["tags"]["job_id"] == str(job_id)
    assert event["tags"]["request_id"] == "req-s1"
    written = json.dumps(event)
    assert "ada@example.com" not in written and "secret-ticket" not in written
    assert "user" not in event


def test_scrubbing_keeps_the_request_route_and_drops_what_is_personal():
    event = {
        "request": {
            "url": "https://api.refit.example/api/orders/events?ticket=eyJ.secret",
            "query_string": "ticket=eyJ.secret",
            "data": {"email": "ada@example.com", "street1": "1 Main St"},
            "cookies": {"session": "x"},
            "headers": {
                "Authorization": "Bearer t0ken",
                "User-Agent": "ua",
                "X-Forwarded-For": "1.2.3.4",
            },
        },
        "user": {"ip_address": "1.2.3.4"},
        "breadcrumbs": {
            "values": [
                {
                    "category": "httplib",
                    "data": {
                        "url": "https://rpc.example/?api-key=k3y",
                        "http.query": "api-key=k3y",
                    },
                }
            ]
        },
    }
    scrubbed = scrub_sentry_event(event, None)
    assert scrubbed["request"] == {
        "url": "https://api.refit.example/api/orders/events",
        "headers": {"User-Agent": "ua"},
    }
    assert "user" not in scrubbed
    assert scrubbed["breadcrumbs"]["values"][0]["data"] == {"url": "https://rpc.example/"}
