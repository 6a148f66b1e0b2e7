"""The one middleware around every request: the request id in and out, the Prometheus counters,
and exactly one `http.request` line per request, as production renders it, naming the route
template and never the token."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI, Request

from refit.logs import SELLER_ID_STATE, RequestMiddleware, configure_logging
from refit.settings import Settings

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_log() -> Iterator[tuple[Lines, io.StringIO]]:
    """The process's log configured as in production (JSON lines), written to a buffer; the
    logging set-up the test found is put back afterwards."""
    root = logging.getLogger()
    named = [logging.getLogger(name) for name in ("uvicorn.access", "procrastinate")]
    saved = (root.handlers[:], root.level, structlog.get_config())
    saved_named = [(log.handlers[:], log.level, log.propagate) for log in named]
    configure_logging(Settings(_env_file=None, env="test", log_format="json"))  # type: ignore[call-arg]
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    yield lines, buffer
    root.handlers[:], level, config = saved
    root.setLevel(level)
    structlog.configure(**config)
    for log, (handlers, level, propagate) in zip(named, saved_named, strict=True):
        log.handlers[:], log.propagate = handlers, propagate
        log.setLevel(level)


async def test_one_access_line_per_request_with_its_fields_and_no_token(
    client, make_user, json_log
):
    lines, buffer = json_log
    seller = await make_user()
    missing = uuid.uuid4()
    flow = [
        ("GET", "/healthz", {"X-Request-ID": "caller-chosen-id-1"}, 200, "/healthz"),
        ("GET", "/api/catalog", {}, 200, "/api/catalog"),
        ("GET", "/api/orders", seller.headers, 200, "/api/orders"),
        ("GET", f"/api/orders/{missing}", seller.headers, 404, "/api/orders/{order_id}"),
        ("GET", "/api/orders", {"Authorization": "Bearer not-a-token"}, 401, "/api/orders"),
        ("POST", "/api/orders/create", {}, 401, "/api/orders/create"),
        ("DELETE", "/api/catalog", {}, 405, "/api/catalog"),
        ("GET", "/no/such/page", {}, 404, "unmatched"),
    ]
    responses = []
    for method, path, headers, status, _route in flow:
        response = await client.request(method, path, headers=headers)
        assert response.status_code == status, (path, response.text)
        responses.append(response)

    access = [line for line in lines() if line["event"] == "http.request"]
    assert len(access) == len(flow)
    for line, (method, _path, headers, status, route), response in zip(
        access, flow, responses, strict=True
    ):
        assert line["method"] == method
        assert line["route"] == route  # the template: the order's id is not in it
        assert line["status"] == status
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["request_id"] == response.headers["x-request-id"]
        assert line["level"] == "info" and line["logger"] == "refit.access"
        if "Authorization" not in headers or status == 401:
            assert "seller_id" not in line
        elif "seller_id" in line:  # once the auth dependency records it (refit/auth/deps.py)
            assert line["seller_id"] == str(seller.id)
    assert access[0]["request_id"] == "caller-chosen-id-1"
    assert len({line["request_id"] for line in access}) == len(flow)

    assert str(missing) not in json.dumps(access)
    written = buffer.getvalue()  # every line, the test client's own included
    assert seller.token not in written and "not-a-token" not in written
    assert "Bearer" not in written


async def test_the_request_id_is_on_every_line_of_the_request_and_made_up_when_unusable(
    json_log,
):
    lines, _ = json_log
    inner = structlog.get_logger("test.inner")

    async def endpoint(request: Request) -> dict[str, str]:
        inner.info("test.inside")
        return {"request_id": request.state.request_id}

    app = FastAPI()
    app.get("/here")(endpoint)
    app.add_middleware(RequestMiddleware)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        given = await http.get("/here", headers={"X-Request-ID": "abc-123"})
        unusable = await http.get("/here", headers={"X-Request-ID": "a\tb"})
    assert given.headers["x-request-id"] == given.json()["request_id"] == "abc-123"
    made_up = unusable.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made_up) and unusable.json()["request_id"] == made_up
    inside = [line for line in lines() if line["event"] == "test.inside"]
    assert [line["request_id"] for line in inside] == ["abc-123", made_up]


async def test_the_seller_recorded_on_the_request_is_named_in_its_access_line(json_log):
    """The contract with the auth dependency: it sets request.state.seller_id once the token
    is valid; the middleware names it and nothing else of the token."""
    lines, _ = json_log
    seller_id = uuid.uuid4()

    async def endpoint(request: Request) -> dict[str, str]:
        setattr(request.state, SELLER_ID_STATE, seller_id)
        return {}

    app = FastAPI()
    app.get("/mine")(endpoint)
    app.add_middleware(RequestMiddleware)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await http.get("/mine")
    (line,) = [line for line in lines() if line["event"] == "http.request"]
    assert line["seller_id"] == str(seller_id)


async def test_metrics_keep_their_names_and_count_by_route_template(client, make_user):
    seller = await make_user()
    await client.get(f"/api/orders/{uuid.uuid4()}", headers=seller.headers)
    exposed = (await client.get("/metrics")).text
    assert (
        'refit_http_requests_total{method="GET",route="/api/orders/{order_id}",status="404"}'
        in exposed
    )
    assert 'refit_http_request_duration_seconds_bucket{le="0.005",method="GET",' in exposed
