"""create_app(): lifespan, middleware, error handlers and every router."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp

from refit import api_docs, openapi, queue
from refit.addresses.endpoints import router as addresses_router
from refit.admin.endpoints import router as admin_router
from refit.admin.manage import router as operators_router
from refit.auth import revocations
from refit.auth.endpoints import router as auth_router
from refit.backoffice.endpoints import router as backoffice_router
from refit.catalog import endpoints as catalog_endpoints
from refit.catalog.endpoints import router as catalog_router
from refit.dashboard import app as dashboard
from refit.error_reports import init_sentry
from refit.errors import BodyLimit, install_error_handlers
from refit.events.endpoints import router as events_router
from refit.events.listener import follow_order_events
from refit.fastlane import FastLane
from refit.flags import endpoints as flags_endpoints
from refit.flags import follower as flags_follower
from refit.flags.endpoints import admin_router as flags_admin_router
from refit.flags.endpoints import router as flags_router
from refit.health.endpoints import router as health_router
from refit.inspection import endpoints as inspection
from refit.inspection import evidence
from refit.listen import Listener
from refit.localstorage import endpoints as localstorage
from refit.localstorage.continue_endpoint import orders_router as continue_router
from refit.logs import RequestMiddleware, configure_logging
from refit.metrics import router as metrics_router
from refit.orders import endpoints as orders_endpoints
from refit.orders.endpoints import router as orders_router
from refit.payouts.endpoints import router as payouts_router
from refit.quotes.endpoints import router as quotes_router
from refit.resources import Resources, close_resources, open_resources
from refit.settings import Settings, get_settings
from refit.shipping.admin import router as shipping_admin_router
from refit.shipping.endpoints import router as shipping_router
from refit.shipping.endpoints import tracking_router
from refit.shipping.webhooks import fast_route as webhooks_fast_route
from refit.shipping.webhooks import router as webhooks_router
from refit.tracing import instrument_app as instrument_tracing
from refit.tracing import setup as setup_tracing

# The document's front page (/docs, /redoc, the TypeScript client's openapi.json): the
# conventions in brief; docs/api.md in the repository has them in full.
log = structlog.get_logger("refit.app")

API_DESCRIPTION = """Sell a used device, get paid in SOL.

- **Auth**: `Authorization: Bearer <access_token>`, from Sign-In With Solana
  (`POST /api/auth/nonce`, then `POST /api/auth/connect-wallet`); operators' tokens from
  `POST /api/admin/login`.
- **Errors**: `application/problem+json` (RFC 9457) with a stable `code`.
- **Lists**: cursor pages `{items, next_cursor}` (`?limit=&cursor=`).
- **Retries**: POSTs that create or spend take an `Idempotency-Key`.
- **Limits**: 429 with `Retry-After` and `RateLimit-*` headers.

The conventions in full: `docs/api.md` in the ReFit repository."""


class RefitAPI(FastAPI):
    """FastAPI with our own middleware (added with `add_middleware`, as usual) in front of
    most of its stack (its telemetry and body-size layers, the routing): the request id,
    metrics and access line, the body limit, CORS and the fast lane (refit/fastlane.py) run
    right inside Starlette's outermost error layer, so the hottest GETs never enter the rest,
    each layer a coroutine and a `send` wrapper per request. Every other request passes
    through ours into FastAPI's, as before; the innermost error layer
    (errors.AnswerEveryError) stays where it was. The outermost stays Starlette's
    ServerErrorMiddleware: OpenTelemetry's instrumentation puts its own layer right inside
    it, so traces, when on, still cover everything."""

    def build_middleware_stack(self) -> ASGIApp:
        everything = self.user_middleware
        ours = [m for m in everything if m.cls in _IN_FRONT]
        self.user_middleware = [m for m in everything if m.cls not in _IN_FRONT]
        try:
            outermost = super().build_middleware_stack()
        finally:
            self.user_middleware = everything
        assert isinstance(outermost, ServerErrorMiddleware), outermost
        app = outermost.app
        for cls, args, kwargs in reversed(ours):
            app = cls(app, *args, **kwargs)
        outermost.app = app
        return outermost


_IN_FRONT: tuple[Any, ...] = (RequestMiddleware, BodyLimit, CORSMiddleware, FastLane)


@asynccontextmanager
async def _serving(app: FastAPI, resources: Resources) -> AsyncIterator[None]:
    """What the API runs beside its requests, started in this order and stopped in reverse:
    the one list, whether its lifespan opened the resources or was given them (`refit run`
    shares them with the worker; the tests share theirs)."""
    setup_tracing(resources.settings, engine=resources.engine)
    watch = await revocations.start_watch(resources.redis, resources.engine, resources.settings)
    try:
        # The process's one LISTEN connection: order events and flags, then started.
        listener = Listener.for_settings(resources.settings)
        follow_order_events(app, listener)
        follower = await flags_follower.start_follower(listener)
        listener.start()
        # Which processes serve, by pid: `refit api --workers N` starts N (refit.http_server).
        log.info("refit.api_process_started", pid=os.getpid())
        try:
            yield
        finally:
            await flags_follower.stop_follower(follower)
            await listener.stop()
    finally:
        # Stopped even when what started after it failed: a watch left running would go on
        # reconnecting, and loading, for the rest of the process.
        await revocations.stop_watch(watch)


@asynccontextmanager
async def _own_resources(settings: Settings) -> AsyncIterator[Resources]:
    """The engine, Redis and a small queue pool of an API process that serves alone (each of
    `refit api --workers N`'s), opened by its lifespan."""
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError(
            "REFIT_DATABASE_URL and REFIT_REDIS_URL are needed to serve the API alone; "
            "`refit run` starts embedded servers when they are unset"
        )
    init_sentry(settings)
    own = await open_resources(settings, ping_before_use=False)
    pool = await queue.open_queue(
        settings.database_url,
        max_size=2,
        prepared_statements=settings.db_prepared_statements,
    )
    try:
        yield own
    finally:
        await queue.close_queue(pool)
        await close_resources(own)


def create_app(settings: Settings | None = None, resources: Resources | None = None) -> FastAPI:
    """The ASGI app. Given `resources`, it uses them (refit run shares them with the worker);
    otherwise its lifespan opens and closes its own, with settings from the environment when
    none are given (each process of `refit api --workers N` builds its app so)."""
    settings = settings or (resources.settings if resources else get_settings())
    if resources is None:
        # Before the server's next line in this process, so that one is formatted as ours too.
        configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if resources is not None:
            async with _serving(app, resources):
                yield
        else:
            async with _own_resources(settings) as own, _serving(app, own):
                yield
        # Its requests answered and its connections closed: this process is done serving.
        log.info("refit.api_process_stopped", pid=os.getpid())

    app = RefitAPI(
        title="ReFit API",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=openapi.operation_id,
        # /docs and /redoc with their assets from the package, not a CDN (refit/api_docs.py).
        docs_url=None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry bridge, off: traces come from our instrumentation with
        # its own provider (refit/tracing.py), metrics from Prometheus, logs from structlog.
        # On, it asks OpenTelemetry's global providers on every request whether it is.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    openapi.install(app)
    api_docs.install(app)
    install_error_handlers(app)
    # Inside the request id, metrics, access line, body limit and CORS added below; in front
    # of FastAPI's routing for the hottest GETs (refit/fastlane.py).
    app.add_middleware(
        FastLane,
        routes={
            "/api/orders/{order_id}": orders_endpoints.lane_get_order,
            "/api/orders": orders_endpoints.lane_list_orders,
            "/api/catalog": catalog_endpoints.lane_catalog,
            "/api/flags": flags_endpoints.lane_my_flags,
        },
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    # Outside CORS: its id, metrics and access line cover preflight requests too.
    app.add_middleware(
        BodyLimit,
        max_body_bytes=settings.max_body_bytes,
        larger={
            **evidence.body_limits(settings),
            **localstorage.body_limits(settings),
            **dashboard.body_limits(settings),
        },
    )
    app.add_middleware(RequestMiddleware)
    # Outermost, when OTEL_EXPORTER_OTLP_ENDPOINT is set: the request's span covers the rest.
    instrument_tracing(app, settings)

    app.include_router(health_router)
    app.include_router(metrics_router)
    # Domain routers are added below, one line each.
    app.include_router(catalog_router)
    app.include_router(quotes_router)
    app.include_router(orders_router)
    app.include_router(continue_router)  # /api/orders/{id}/continue (refit.localstorage)
    app.include_router(events_router)
    app.include_router(addresses_router)
    app.include_router(shipping_router)
    app.include_router(tracking_router)
    app.include_router(admin_router)
    app.include_router(operators_router)
    app.include_router(shipping_admin_router)
    app.include_router(payouts_router)
    app.include_router(localstorage.router)
    app.include_router(backoffice_router)
    app.include_router(inspection.router)
    app.include_router(inspection.photos_router)
    app.include_router(webhooks_router)
    # Carriers' bursts: matched first, without FastAPI's dependency solving (webhooks.py).
    app.router.routes.insert(0, webhooks_fast_route())
    app.include_router(auth_router)
    # The operators' dashboard: an app of its own, so its errors are pages, not problem+json.
    app.mount(dashboard.PREFIX, dashboard.create_dashboard())
    app.include_router(flags_router)
    app.include_router(flags_admin_router)
    return app
