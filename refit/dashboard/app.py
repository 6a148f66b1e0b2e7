"""The dashboard as an app of its own, mounted at /admin by refit.app: its own error pages
(HTML for people, where the API answers problem+json) and its static files."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from refit.dashboard import (
    audit,
    auth,
    errors,
    flags,
    inspect,
    jobs,
    numbers,
    operators,
    orders,
    outbox,
    payout_actions,
    payouts,
    returns,
    webhooks,
)
from refit.dashboard.photos import body_limits
from refit.dashboard.render import HERE

__all__ = ["PREFIX", "body_limits", "create_dashboard"]

PREFIX = "/admin"


def create_dashboard() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    errors.install(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (
        auth,
        orders,
        payout_actions,
        returns,
        inspect,
        payouts,
        numbers,
        operators,
        outbox,
    ):
        app.include_router(module.router)
    # The on-call pages (admins).
    for module in (flags, webhooks, jobs, audit):
        app.include_router(module.router)
    return app
