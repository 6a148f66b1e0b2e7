"""The access line names the operator as it names the seller, and tracing set nowhere costs
nothing: no middleware, no instrumentation, no trace context in jobs."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI, Request

from refit import tracing
from refit.app import create_app
from refit.logs import OPERATOR_ID_STATE, RequestMiddleware


async def test_the_operator_recorded_on_the_request_is_named_in_its_access_line(json_log):
    """The contract with the operators' auth dependency: it sets request.state.operator_id;
    the middleware names it and nothing else of the token."""
    operator_id = uuid.uuid4()

    async def endpoint(request: Request) -> dict[str, str]:
        setattr(request.state, OPERATOR_ID_STATE, operator_id)
        return {}

    app = FastAPI()
    app.get("/api/admin/thing")(endpoint)
    app.add_middleware(RequestMiddleware)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        await http.get("/api/admin/thing", headers={"Authorization": "Bearer op-t0ken"})
    (line,) = [line for line in json_log() if line["event"] == "http.request"]
    assert line["operator_id"] == str(operator_id) and "seller_id" not in line
    assert "op-t0ken" not in repr(json_log())


async def test_without_an_otlp_endpoint_nothing_is_installed(settings, resources):
    assert settings.otel_exporter_otlp_endpoint is None
    app = create_app(settings, resources=resources)
    async with app.router.lifespan_context(app):
        assert not tracing.enabled()
        assert tracing.carrier() == {}
        assert not any("OpenTelemetry" in m.cls.__name__ for m in app.user_middleware)  # type: ignore[attr-defined]
