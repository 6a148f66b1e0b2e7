"""Prometheus metrics: request counts and latencies by route (recorded by
`logs.RequestMiddleware`), served at /metrics.

Several processes behind one port: PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode) makes /metrics count them all; `refit api --workers N` sets one.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter("refit_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "refit_http_request_duration_seconds", "HTTP request latency", ["method", "route"]
)

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
