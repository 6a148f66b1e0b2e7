"""The whole app on refit's own HTTP server (`http_server.config`, the single process's
`InLoopServer`) on a loopback port, for the red team's raw-socket attacks on it: the keep-alive
and the head's time bound shortened to 2 s (production: 75 s and 30 s), so that they show
within a test's seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from refit import bounded_head, http_server, queue
from refit.app import create_app
from refit.resources import close_resources, open_resources
from refit.settings import Settings
from tests.processes import free_port


@dataclass
class Served:
    port: int
    server: http_server.InLoopServer
    app: Any
    task: asyncio.Future[Any]


@contextlib.asynccontextmanager
async def served_app(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    routes: dict[str, Callable[..., Any]],
    **updates: Any,
) -> AsyncIterator[Served]:
    """The app with `routes` added (GET, path: endpoint) and `updates` to its settings."""
    monkeypatch.setattr(http_server, "KEEP_ALIVE_SECONDS", 2)
    monkeypatch.setattr(bounded_head, "HEAD_SECONDS", 2)
    port = free_port()
    ours = settings.model_copy(update={"host": "127.0.0.1", "port": port, **updates})
    resources = await open_resources(ours)
    assert ours.database_url
    jobs = await queue.open_queue(ours.database_url, max_size=2)
    app = create_app(ours, resources=resources)
    for path, endpoint in routes.items():
        app.add_api_route(path, endpoint, methods=["GET"])
    server = http_server.InLoopServer(http_server.config(ours, app))
    task = asyncio.ensure_future(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not task.done(), task
                await asyncio.sleep(0.05)
        yield Served(port, server, app, task)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        await queue.close_queue(jobs)
        await close_resources(resources)
