"""OpenTelemetry traces (HTTP in, SQL, Redis, HTTP out, jobs) sent over OTLP/HTTP to
`OTEL_EXPORTER_OTLP_ENDPOINT`: the collector or APM agent (Datadog, New Relic, Grafana)
that the deployment runs. The exporter also reads the standard OTEL_EXPORTER_OTLP_HEADERS
(an APM's API key) and OTEL_SERVICE_NAME.

Unset, nothing is imported or installed: no middleware, no SQL event listener, no wrapper
around Redis or httpx, so the hot path costs what it did before.

Our own TracerProvider is passed to every instrumentor instead of being set as OpenTelemetry's
global one: the global can be set only once per process, and `shutdown()` must be able to
take everything off again (tests, and a process that reconfigures).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from refit.settings import Settings

_state: dict[str, Any] = {}


def enabled() -> bool:
    return "provider" in _state


def setup(settings: Settings, *, engine: Any = None) -> bool:
    """Start exporting this process's traces when the endpoint is set (once per process;
    later calls only add `engine`, an AsyncEngine, if it is new). True when tracing is on."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        return False
    if not enabled():
        _start(settings, endpoint)
    if engine is not None and id(engine) not in _state["engines"]:
        _state["engines"][id(engine)] = _trace_engine(engine)
    return True


def _trace_engine(engine: Any) -> Any:
    # The instrumentor's own `instrument(engine=…)` works once per process; its EngineTracer
    # (what that call builds) takes any number of engines (the tests open one per test).
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    tracer = _state["provider"].get_tracer("opentelemetry.instrumentation.sqlalchemy")
    # Connection-pool metrics are Prometheus's job here: a no-op meter.
    usage = get_meter("refit.tracing").create_up_down_counter("db.client.connections.usage")
    return EngineTracer(tracer, engine.sync_engine, usage)


def _start(settings: Settings, endpoint: str) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, str] = {"deployment.environment": settings.env}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "refit"
    provider = TracerProvider(resource=Resource.create(attributes))
    # The standard variable names the collector's base URL; the traces path is ours to add.
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # Redis commands are recorded without their arguments (the instrumentor's own sanitizing).
    RedisInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(
        tracer_provider=provider,
        request_hook=lambda span, _request: _without_query(span),
        async_request_hook=_without_query_async,
    )
    _state.update(provider=provider, engines={})


def instrument_app(app: Any, settings: Settings) -> None:
    """Spans for the app's requests, named by route template. The probes and /metrics are
    left out: they would be most of the spans and none of the story."""
    if not setup(settings):
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_state["provider"],
        excluded_urls="/healthz,/readyz,/metrics",
        server_request_hook=lambda span, _scope: _without_query(span),
        exclude_spans=["receive", "send"],
    )


# A query string may carry a secret: an event stream's ticket (a JWT) coming in, an RPC
# provider's API key going out. Spans keep the path only.
_URL_ATTRIBUTES = ("http.target", "http.url", "url.full", "url.query")


def _without_query(span: Any) -> None:
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and (key == "url.query" or "?" in value):
            span.set_attribute(key, "" if key == "url.query" else value.split("?", 1)[0])


async def _without_query_async(span: Any, _request: Any) -> None:
    _without_query(span)


def carrier() -> dict[str, str]:
    """The current trace context (`traceparent`) for a job being deferred; {} when off."""
    if not enabled():
        return {}
    from opentelemetry.propagate import inject

    found: dict[str, str] = {}
    inject(found)
    return found


@contextlib.contextmanager
def job_span(task: str, job_id: int, attempt: int, parent: dict[str, str]) -> Iterator[None]:
    """A span around a job's attempt, a child of the request (or job) that deferred it, so the
    whole flow is one trace. Nothing when tracing is off."""
    if not enabled():
        yield
        return
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    tracer = _state["provider"].get_tracer("refit.queue")
    with tracer.start_as_current_span(
        f"job {task}",
        context=extract(parent) if parent else None,
        kind=SpanKind.CONSUMER,
        attributes={"refit.job.id": job_id, "refit.job.task": task, "refit.job.attempt": attempt},
    ):
        yield


def flush(timeout_seconds: float = 10.0) -> None:
    if enabled():
        _state["provider"].force_flush(int(timeout_seconds * 1000))


def shutdown() -> None:
    """Send what is buffered, then take every instrumentation off."""
    if not enabled():
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    provider = _state.pop("provider")
    _state.pop("engines")
    EngineTracer.remove_all_event_listeners()
    RedisInstrumentor().uninstrument()
    HTTPXClientInstrumentor().uninstrument()
    provider.shutdown()


@contextlib.contextmanager
def sql_span(statement: str) -> Iterator[None]:
    """A span for SQL sent outside the engine (one_message.job_messages), as the engine's own
    instrumentation records its statements: the text with its placeholders, never a value.
    Nothing when tracing is off."""
    if not enabled():
        yield
        return
    from opentelemetry.trace import SpanKind

    tracer = _state["provider"].get_tracer("refit.one_message")
    name = statement.split(None, 1)[0] if statement.strip() else "SQL"
    with tracer.start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes={"db.system": "postgresql", "db.statement": statement},
    ):
        yield
