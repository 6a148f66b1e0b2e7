"""Errors as pages for people, never problem+json: the dashboard's own handlers (it is a
mounted app, so these replace the API's for its paths only)."""

from __future__ import annotations

import re
from http import HTTPStatus
from urllib.parse import quote

import psycopg
import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from refit.dashboard.render import page
from refit.dashboard.session import SignInRequired
from refit.errors import ProblemError
from refit.inputs import refuse_unstorable_input
from refit.log_setup import describe_error

log = structlog.get_logger(__name__)


_ORDER_PATH = re.compile(r"/admin/orders/([0-9a-f-]{36})")


def error_page(request: Request, status: int, detail: str, **extra: object) -> HTMLResponse:
    # An action on an order leads back to that order, where its state shows why.
    on_order = _ORDER_PATH.match(request.url.path)
    extra.setdefault("back", f"/admin/orders/{on_order.group(1)}" if on_order else "/admin/")
    return page(
        request,
        "error.html",
        status_code=status,
        status=status,
        title=HTTPStatus(status).phrase,
        detail=detail,
        **extra,
    )


def _login_redirect(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(f"/admin/login?next={quote(target)}", status_code=303)


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    if isinstance(exc, SignInRequired) and request.method in ("GET", "HEAD"):
        return _login_redirect(request)
    response = error_page(request, exc.status, exc.detail, code=exc.code)
    for name, value in exc.headers.items():
        if name.lower() != "www-authenticate":
            response.headers[name] = value
    return response


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"There is no page at {request.url.path}"
    # InputRefused (refit.inputs) carries its code.
    return error_page(request, exc.status_code, detail, code=getattr(exc, "code", None))


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{' → '.join(str(p) for p in err.get('loc', ())[1:]) or 'form'}: {err.get('msg', '')}"
        for err in exc.errors()
    ]
    return error_page(request, 422, "Some fields are not right:", problems=problems)


async def _data_error(request: Request, exc: Exception) -> Response:
    # The database refused a value that got past the input checks (a number out of range,
    # say): the request's transaction is rolled back, nothing changed.
    log.info("dashboard.data_rejected_by_database", error=str(getattr(exc, "orig", exc))[:200])
    return error_page(request, 400, "The form contains characters or values that cannot be stored")


async def _dependency_down(request: Request, exc: Exception) -> Response:
    log.warning(
        "dashboard.dependency_unavailable", path=request.url.path, error=describe_error(exc)
    )
    response = error_page(
        request, 503, "A service we depend on is not answering; nothing was changed. Try again."
    )
    response.headers["Retry-After"] = "1"
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("dashboard.unhandled_error", path=request.url.path)
    return error_page(request, 500, "Something went wrong on our side; nothing may have changed")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(sqlalchemy.exc.DataError, _data_error)
    # A NUL in a form field, the search or a path: a 400 page before anything runs. Every
    # route included after this carries the dependency (JSON bodies are the API's guard's).
    app.router.dependencies.insert(0, Depends(refuse_unstorable_input))
    for unavailable in (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        psycopg.OperationalError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    ):
        app.add_exception_handler(unavailable, _dependency_down)
    app.add_exception_handler(Exception, _unexpected)
