"""Liveness and readiness for load balancers and orchestrators (public)."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from refit import queue, resources
from refit.log_setup import describe_error

router = APIRouter(tags=["operations"])
log = structlog.get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving. Checks nothing else, so a slow database never gets
    healthy API processes killed."""
    return {"status": "ok"}


async def _check(name: str, probe: Any) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
        return name, None
    except Exception as exc:  # any failure means not ready; the reason is reported
        log.warning("readyz.check_failed", check=name, error=describe_error(exc))
        return name, type(exc).__name__


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready to take traffic: PostgreSQL and Redis answer, and, in a process that runs a job
    worker or runs beside one (`refit run`), a worker sent a heartbeat within
    REFIT_WORKER_STALLED_AFTER_SECONDS. An API alone (`refit api`) only reports the workers'
    heartbeat: its requests are served while workers elsewhere restart."""
    res = resources.current()

    async def database() -> None:
        async with res.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    results = dict(
        await asyncio.gather(_check("database", database()), _check("redis", res.redis.ping()))
    )
    checks = {
        name: ("ok" if error is None else f"error: {error}") for name, error in results.items()
    }
    try:
        workers: dict[str, Any] = await asyncio.wait_for(
            queue.worker_heartbeats(), CHECK_TIMEOUT_SECONDS
        )
    except Exception as exc:
        workers = {"error": type(exc).__name__}
    down = [name for name, error in results.items() if error]
    problems = ["A dependency is down: " + ", ".join(down)] if down else []
    expect_worker = getattr(request.app.state, "expect_worker", False)
    if expect_worker:
        workers["required"] = True
        if not workers.get("alive"):
            problems.append("No job worker is alive")
    body: dict[str, Any] = {
        "status": "unavailable" if problems else "ready",
        "checks": checks,
        "workers": workers,
    }
    if problems:
        body.update(
            type="https://refit.dev/problems/dependency_unavailable",
            title="Service Unavailable",
            status=503,
            detail="; ".join(problems),
            code="dependency_unavailable",
        )
        return JSONResponse(body, status_code=503, media_type="application/problem+json")
    return JSONResponse(body)
