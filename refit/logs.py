"""structlog: JSON lines in production, readable lines in a terminal; a request id in each, and
one access line per request."""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from refit.metrics import HTTP_LATENCY, HTTP_REQUESTS
from refit.settings import Settings


def configure_logging(settings: Settings) -> None:
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "json" if settings.is_production or not sys.stderr.isatty() else "console"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else (lambda _l, _m, e: e),
            renderer,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # uvicorn's own access log repeats our http.request line; procrastinate is chatty at INFO.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("procrastinate").setLevel(logging.WARNING)


# A seller-authenticated request records its seller here (`request.state.seller_id`), so the
# access line names who asked without this layer decoding tokens itself.
SELLER_ID_STATE = "seller_id"
_MAX_REQUEST_ID = 64

access_log = structlog.get_logger("refit.access")


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            incoming = value[:_MAX_REQUEST_ID].decode("latin-1")
            if incoming and incoming.isprintable():
                return incoming
            break
    return uuid.uuid4().hex


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"content-type" and value.startswith(b"text/event-stream")
        for name, value in headers
    )


def _route(scope: Scope) -> str:
    # The route template, not the raw path: ids in paths would explode the metrics' label
    # sets and the access lines' distinct values.
    return getattr(scope.get("route"), "path", "unmatched")


class RequestMiddleware:
    """The one layer around every HTTP request: a request id (the caller's X-Request-ID or a
    new one) bound to each log line of the request and echoed in the response; the Prometheus
    counters; one `http.request` access line. One layer, not three: each layer costs a
    coroutine and a `send` wrapper per request. Pure ASGI, so streaming responses pass.

    An event stream (text/event-stream) lasts as long as the client stays: its latency is the
    time to its headers, observed when they go out; its access line is written when it ends,
    with `duration_ms` that same latency and `stream_ms` the stream's whole life."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Which of `refit api --workers N` served it.
        self.pid = os.getpid()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope["headers"])
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500  # what the client gets when the app raises before answering
        started = time.perf_counter()
        streamed_after: float | None = None  # an event stream's time to its headers

        async def send_with_id(message: Message) -> None:
            nonlocal status, streamed_after
            if message["type"] == "http.response.start":
                status = message["status"]
                # A copy: the list may be a reused Response's own.
                message["headers"] = [*message.get("headers", ()), id_header]
                if _is_event_stream(message["headers"]):
                    streamed_after = time.perf_counter() - started
                    HTTP_LATENCY.labels(scope["method"], _route(scope)).observe(streamed_after)
            await send(message)

        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            route = _route(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            extra: dict[str, Any] = {}
            if streamed_after is None:
                HTTP_LATENCY.labels(method, route).observe(seconds)
            else:
                extra["stream_ms"] = round(seconds * 1000, 2)
                seconds = streamed_after
            seller_id = state.get(SELLER_ID_STATE)
            if seller_id is not None:
                extra["seller_id"] = str(seller_id)
            access_log.info(
                "http.request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 2),
                request_id=request_id,
                pid=self.pid,
                **extra,
            )
            structlog.contextvars.reset_contextvars(**bound)
