"""Event-stream fixtures: a real HTTP server in this process (httpx's in-process transport
waits for a whole body, and a stream has none), with a short heartbeat."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from refit.app import create_app
from refit.resources import Resources
from refit.settings import Settings

HEARTBEAT_SECONDS = 0.25


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sse_heartbeat_seconds": HEARTBEAT_SECONDS})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(uvicorn.Server):
    # pytest keeps its own signal handlers.
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Live:
    app: FastAPI
    url: str
    http: httpx.AsyncClient


@pytest.fixture
async def live(resources: Resources) -> AsyncIterator[Live]:
    """The app served by uvicorn on a free port (its lifespan runs: the listener starts)."""
    app = create_app(resources.settings, resources=resources)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        # A test that fails with a stream open must not hang the shutdown.
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        assert not serving.done(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        await asyncio.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Live(app, url, http)
    finally:
        server.should_exit = True
        await serving
