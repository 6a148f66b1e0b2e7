"""The whole app (API and dashboard) served by uvicorn on a loopback port, in the test's own
process and event loop, for tests that need a real HTTP server: a browser's, or a client
that must see real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import uvicorn

from refit.app import create_app
from refit.resources import Resources


class _Server(uvicorn.Server):
    # pytest keeps its own signal handlers.
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serving(resources: Resources) -> AsyncIterator[str]:
    """The app's base URL, on a loopback port bound here (so no race for it), until exit."""
    app = create_app(resources.settings, resources=resources)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=5)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not task.done(), "uvicorn did not start"
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
