"""One error type carrying an HTTP status and a stable code, rendered as RFC 9457 problem+json.

Business errors are raised as `ProblemError` (or a subclass) from services; everything else the
app can produce (validation, 404/405, unexpected crashes) is converted here too, so a client
only ever sees `application/problem+json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import psycopg
import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from refit import inputs
from refit.log_setup import describe_error

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.status = status or self.status
        self.code = code or self.code
        self.title = title or HTTPStatus(self.status).phrase
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.detail)


class BadRequest(ProblemError):
    status, code = 400, "bad_request"


class Unauthorized(ProblemError):
    status, code = 401, "unauthorized"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class NotFound(ProblemError):
    status, code = 404, "not_found"


class Conflict(ProblemError):
    status, code = 409, "conflict"


class Unprocessable(ProblemError):
    status, code = 422, "invalid_field"


class RateLimited(ProblemError):
    status, code = 429, "rate_limited"


class ServiceUnavailable(ProblemError):
    status, code = 503, "service_unavailable"


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://refit.dev/problems/{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status, exc.code, exc.detail, title=exc.title, headers=exc.headers, extra=exc.extra
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # InputRefused (refit.inputs) carries its own code.
    code = getattr(exc, "code", None) or _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No resource at {request.url.path}"
    return problem_response(
        exc.status_code, code, detail, headers=dict(exc.headers) if exc.headers else None
    )


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in errors):
        return problem_response(
            400, "malformed_json", "The request body is not valid JSON", extra={"errors": errors}
        )
    return problem_response(
        422, "validation_error", "Some fields are invalid", extra={"errors": errors}
    )


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # Input the database cannot store (a NUL character in text, a number out of range) that
    # got past validation: the request's transaction is rolled back; the client gets a 400.
    log.info("http.data_rejected_by_database", error=str(getattr(exc, "orig", exc))[:200])
    return problem_response(
        400, "invalid_data", "The request contains characters or values that cannot be stored"
    )


# PostgreSQL or Redis not answering: down, restarting, a dropped connection, a pooled
# connection that died while idle (API-only processes do not ping before use), a pool with
# nothing to give in time, a connection not opened in time, a statement cancelled at its
# statement timeout (psycopg's QueryCanceled) or left unanswered (db.AnswerTimeout): all
# OperationalErrors. Worth retrying in a moment; not a bug.
DEPENDENCY_DOWN: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # the engine's pool timed out
    psycopg.OperationalError,  # psycopg_pool.PoolTimeout (the queue's pool) included
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,  # a socket reset or refused that no driver wrapped
)
# How long a client should wait before trying again (Retry-After): an outage is often a
# restart or a failover, seconds long.
DEPENDENCY_RETRY_AFTER_SECONDS = 2


def is_dependency_down(exc: BaseException) -> bool:
    """Whether `exc`, or what caused it, is PostgreSQL or Redis not answering. Wrappers are
    looked through: procrastinate's ConnectorException around psycopg's error, an
    ExceptionGroup from a task group, an error raised while handling a dropped connection."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, DEPENDENCY_DOWN):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def dependency_down_response() -> JSONResponse:
    return problem_response(
        503,
        "dependency_unavailable",
        "A service we depend on is not answering; try again shortly",
        headers={"Retry-After": str(DEPENDENCY_RETRY_AFTER_SECONDS)},
    )


async def _dependency_down(request: Request, exc: Exception) -> JSONResponse:
    # One warning line, no traceback: the cause is outside this process, and an outage
    # would otherwise bury the log in identical tracebacks.
    log.warning("http.dependency_unavailable", path=request.url.path, error=describe_error(exc))
    return dependency_down_response()


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_dependency_down(exc):
        return await _dependency_down(request, exc)
    # Logged with the traceback (and sent to Sentry by its logging integration); the client
    # gets no internals.
    log.error("http.unhandled_error", path=request.url.path, exc_info=exc)
    return problem_response(500, "internal_error", "Something went wrong on our side")


async def error_response(scope: Any, exc: Exception) -> JSONResponse:
    """What the app's exception handlers answer for `exc`, for a handler outside FastAPI's
    routing (refit.fastlane): its problem, 503 for a dependency that is down, else 500."""
    request = Request(scope)
    if isinstance(exc, ProblemError):
        return await _problem(request, exc)
    if isinstance(exc, StarletteHTTPException):
        return await _http(request, exc)
    if isinstance(exc, sqlalchemy.exc.DataError):
        return await _data_error(request, exc)
    if isinstance(exc, DEPENDENCY_DOWN):
        return await _dependency_down(request, exc)
    return await _unexpected(request, exc)


class AnswerEveryError:
    """The innermost middleware: an exception no handler took becomes its problem+json answer
    here (503 for a dependency that is down, else 500), logged once, and goes no further.
    Left to Starlette's outer error middleware, it would be re-raised to the server after the
    answer, which logs the traceback a second time ("Exception in ASGI application") and
    closes the keep-alive connection."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_watched(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        except Exception as exc:
            if started:
                raise  # a response cut short: only closing the connection tells the client
            response = await _unexpected(Request(scope), exc)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(sqlalchemy.exc.DataError, _data_error)
    for unavailable in DEPENDENCY_DOWN:
        app.add_exception_handler(unavailable, _dependency_down)
    # Errors raised in a middleware outside it (none of ours raises).
    app.add_exception_handler(Exception, _unexpected)
    # Added first, so every middleware added after it (create_app's) is outside it.
    app.add_middleware(AnswerEveryError)
    install_input_refusals(app)


def install_input_refusals(app: FastAPI) -> None:
    """Text PostgreSQL cannot store and JSON nested too deep are 400s (refit.inputs): the
    body guard, and a first dependency of every route added after this call (the app's
    router passes its dependencies to every route it includes). The dashboard, a mounted app
    of its own, adds the dependency to its routes too; the guard here covers its bodies."""
    app.add_middleware(inputs.JsonGuard)
    app.router.dependencies.insert(0, Depends(inputs.refuse_unstorable_input))


# A body over the limit is read to its end and dropped (up to this much, for so long) before
# the 413 goes out: a client that sends its whole body before reading the answer (httpx,
# requests, most) would otherwise have the connection reset under it and never see the 413.
# Past either bound the connection is closed on it. A client sending `Expect: 100-continue`
# is answered at once: it has sent nothing yet.
DRAIN_MAX_BYTES = 8 * 1024 * 1024
DRAIN_MAX_SECONDS = 10.0


async def _drain(receive: Any, max_bytes: int) -> None:
    dropped = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_MAX_SECONDS):
            while dropped <= max_bytes:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                dropped += len(message.get("body", b""))


class BodyLimit:
    """413 problem+json for a request body over the limit, never held in memory: refused up
    front when its Content-Length says so, cut off as it streams in otherwise (chunked).

    `larger`: path patterns (regular expressions matching the whole path) allowed a larger
    body than `max_body_bytes`, with their own limit (photo uploads)."""

    def __init__(
        self, app: Any, max_body_bytes: int, larger: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.larger = [(re.compile(path), limit) for path, limit in (larger or {}).items()]

    def _limit(self, path: str) -> int:
        return next(
            (limit for pattern, limit in self.larger if pattern.fullmatch(path)),
            self.max_body_bytes,
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        detail = f"The request body is over {limit} bytes"
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            if int(declared) - limit <= DRAIN_MAX_BYTES and b"100-continue" not in headers.get(
                b"expect", b""
            ):
                await _drain(receive, int(declared))
            response = problem_response(
                413, "payload_too_large", detail, headers={"Connection": "close"}
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                if message.get("more_body", False):
                    await _drain(receive, DRAIN_MAX_BYTES)
                # An HTTPException: FastAPI passes it through its body parsing (anything else
                # becomes a 400 there); the HTTP handler answers it as problem+json.
                raise StarletteHTTPException(413, detail)
            return message

        await self.app(scope, counted, send)


# An OpenAPI response entry's body: application/problem+json (add a "description").
PROBLEM_CONTENT: dict[str, Any] = {"content": {"application/problem+json": {}}}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json answers an endpoint gives (`responses=`)."""
    return {
        status: {
            "description": HTTPStatus(status).phrase + " (problem+json, see `code`)",
            **PROBLEM_CONTENT,
        }
        for status in statuses
    }
