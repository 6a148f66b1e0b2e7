"""Signing in and out of the dashboard: the same operator accounts, and the same throttle
(the same Redis counters) as POST /api/admin/login, so guesses spread over both doors still
count once."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from refit import ratelimit, resources
from refit.admin import operators, throttle
from refit.admin.deps import AwaitingApproval
from refit.dashboard import session as dash_session
from refit.dashboard.render import page
from refit.dashboard.session import OperatorDep
from refit.errors import RateLimited
from refit.transactions import SessionDep

log = structlog.get_logger(__name__)

router = APIRouter()


def _safe_next(target: str | None) -> str:
    # Only a path of the dashboard: never an open redirect to another site.
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return "/admin/"


def _login_page(
    request: Request, next_path: str, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    token = dash_session.new_login_csrf(request)
    response = page(
        request, "login.html", status_code=status_code, next=next_path, error=error, csrf=token
    )
    dash_session.set_login_csrf(response, token)
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _login_page(request, _safe_next(next))


@router.post("/login", dependencies=[Depends(dash_session.check_login_csrf)])
async def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=256)],
    password: Annotated[str, Form(max_length=operators.MAX_PASSWORD_LENGTH)],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    res = resources.current()
    name, ip = username.strip().lower(), ratelimit.client_ip(request)
    try:
        # The API's throttle itself: one count of failures per username and address.
        operator = await throttle.authenticate(session, username, password, ip)
    except AwaitingApproval:
        log.info("dashboard.login_awaiting_approval", username=name[:64], ip=ip)
        return _login_page(
            request,
            _safe_next(next),
            error="This admin account is waiting for a second admin's approval.",
            status_code=403,
        )
    except RateLimited as exc:
        refused = _login_page(
            request,
            _safe_next(next),
            error="Too many failed sign-ins; wait a few minutes and try again.",
            status_code=429,
        )
        refused.headers.update({k: v for k, v in exc.headers.items() if k == "Retry-After"})
        return refused
    if operator is None:
        log.info("dashboard.login_failed", username=name[:64], ip=ip)
        return _login_page(
            request, _safe_next(next), error="Wrong username or password.", status_code=401
        )
    log.info("dashboard.login", operator_id=str(operator.id), ip=ip)
    signed_in = RedirectResponse(_safe_next(next), status_code=303)
    dash_session.issue(res.settings, signed_in, operator)
    return signed_in


@router.post("/logout")
async def logout(operator: OperatorDep, session: SessionDep) -> Response:
    response = RedirectResponse("/admin/login", status_code=303)
    await dash_session.sign_out(session, operator.id, response)
    return response
