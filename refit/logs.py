"""structlog: JSON lines in production, readable lines in a terminal; a request id in each, and
one access line per request."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import structlog
from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from refit import tracing

# configure_logging and for_people live in refit.log_setup (light: structlog and the settings),
# so a process can set up its logging before it imports the middleware's and jobs' modules.
from refit.log_setup import configure_logging, for_people  # noqa: F401
from refit.metrics import HTTP_LATENCY, HTTP_REQUESTS, JOB_DURATION, JOBS

# A seller-authenticated request records its seller here (`request.state.seller_id`), an
# operator's its operator (`request.state.operator_id`), so the access line names who asked
# without this layer decoding tokens itself.
SELLER_ID_STATE = "seller_id"
OPERATOR_ID_STATE = "operator_id"

# The request, or the job, running in this task: `queue.defer` writes it into the jobs it
# defers, so their log lines carry the id of the request that caused them (and so on, down
# the jobs those jobs defer).
_current_request_id: ContextVar[str | None] = ContextVar("refit_request_id", default=None)
# Where a job's args carry its cause (request id, trace context). The worker takes it out
# before the task runs (`observe_job`): task functions never see it.
JOB_ORIGIN_KEY = "_origin"
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
        current = _current_request_id.set(request_id)
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
            operator_id = state.get(OPERATOR_ID_STATE)
            if operator_id is not None:
                extra["operator_id"] = str(operator_id)
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
            _current_request_id.reset(current)


def job_origin() -> dict[str, Any]:
    """The args a job being deferred now carries of its cause: {} outside any request or job
    and with tracing off."""
    origin = tracing.carrier()
    request_id = _current_request_id.get()
    if request_id is not None:
        origin["request_id"] = request_id
    return {JOB_ORIGIN_KEY: origin} if origin else {}


@contextlib.contextmanager
def observe_job(context: JobContext) -> Iterator[None]:
    """Around each job attempt: the deferring request's id in every log line (and in the jobs
    this one defers), a span in that request's trace, the job in Sentry's context, and the
    attempt's outcome and duration counted by task."""
    job = context.job
    assert job is not None
    found = job.task_kwargs.pop(JOB_ORIGIN_KEY, None)
    origin = {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
    request_id = origin.pop("request_id", None)
    token = _current_request_id.set(request_id)
    bound = structlog.contextvars.bind_contextvars(request_id=request_id) if request_id else {}
    started = time.perf_counter()
    outcome = "failed"
    try:
        with (
            _sentry_job_scope(job.id, job.task_name, request_id) as report,
            tracing.job_span(job.task_name, job.id or 0, job.attempts + 1, origin),
        ):
            try:
                yield
            except (JobAborted, asyncio.CancelledError):
                outcome = "aborted"  # an operator's abort, or the worker shutting down
                raise
            except Exception as exc:
                outcome = _failure(context, exc)
                if outcome == "failed":
                    # Out of attempts: someone must look. Earlier attempts are retried alone.
                    report(exc)
                raise
        outcome = "succeeded"
    finally:
        JOBS.labels(job.task_name, outcome).inc()
        JOB_DURATION.labels(job.task_name).observe(time.perf_counter() - started)
        if bound:
            structlog.contextvars.reset_contextvars(**bound)
        _current_request_id.reset(token)


def _failure(context: JobContext, exc: BaseException) -> str:
    job = context.job
    assert job is not None
    task = context.app.tasks.get(job.task_name)
    retried = task is not None and task.get_retry_exception(exception=exc, job=job) is not None
    return "retried" if retried else "failed"


@contextlib.contextmanager
def _sentry_job_scope(job_id: int | None, task: str, request_id: str | None) -> Iterator[Any]:
    # Not imported unless REFIT_SENTRY_DSN set it up (error_reports.init_sentry): the SDK
    # costs a noticeable part of a second at start-up.
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is None or not sentry_sdk.is_initialized():
        yield lambda _exc: None
        return
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("task", task)
        scope.set_tag("job_id", str(job_id))
        if request_id:
            scope.set_tag("request_id", request_id)
        yield sentry_sdk.capture_exception


# Request headers Sentry may keep: none of them identifies or authenticates anyone.
_SENTRY_HEADERS = {"content-type", "content-length", "accept", "user-agent", "x-request-id"}


def scrub_sentry_event(event: dict[str, Any], _hint: Any) -> dict[str, Any]:
    """Sentry's `before_send`: which request or job (ids from the log context) and nothing
    personal: no body (emails, addresses), no query string (a stream ticket), no cookies, no
    user, only harmless headers."""
    context = structlog.contextvars.get_contextvars()
    tags = event.setdefault("tags", {})
    if isinstance(tags, dict):
        for key in ("request_id", "job_id", "task"):
            if key in context:
                tags.setdefault(key, str(context[key]))
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("data", "query_string", "cookies", "env"):
            request.pop(key, None)
        if "url" in request and isinstance(request["url"], str):
            request["url"] = request["url"].split("?", 1)[0]
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                name: value for name, value in headers.items() if name.lower() in _SENTRY_HEADERS
            }
    # Outgoing calls' breadcrumbs: an RPC provider's URL may carry its API key as a query.
    breadcrumbs = event.get("breadcrumbs")
    values = breadcrumbs.get("values") if isinstance(breadcrumbs, dict) else breadcrumbs
    for crumb in values if isinstance(values, list) else []:
        data = crumb.get("data") if isinstance(crumb, dict) else None
        if isinstance(data, dict):
            data.pop("http.query", None)
            data.pop("http.fragment", None)
            if isinstance(data.get("url"), str):
                data["url"] = data["url"].split("?", 1)[0]
    event.pop("user", None)
    return event
