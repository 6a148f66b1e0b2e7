"""Every way PostgreSQL or Redis not answering reaches a request is a 503 problem+json with
Retry-After, raised in an endpoint or in a dependency, bare or wrapped; the errors come from
the real drivers (a refused port, a pool with nothing to give, a Redis that never answers).
Served by a real uvicorn on one keep-alive connection: an error answered (503 or 500) keeps
the connection, and no traceback reaches the server to be logged a second time."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import procrastinate.exceptions
import psycopg
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Request
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from refit import db
from refit.errors import DEPENDENCY_RETRY_AFTER_SECONDS, install_error_handlers


@asynccontextmanager
async def _silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers (a server that hangs)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def _refused_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    return sock


@asynccontextmanager
async def _served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn says so by a flag, not an event)
        await asyncio.sleep(0.01)
    port = sock.getsockname()[1]
    # One connection for every request: a closed keep-alive connection would show as a new
    # client port in `/peer`.
    limits = httpx.Limits(max_connections=1)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
        ) as http:
            yield http
    finally:
        server.should_exit = True
        await serving


@pytest.mark.allow_500
async def test_dependency_errors_are_503_and_answered_once(settings, caplog):
    assert settings.database_url
    refused = _refused_port()
    refused_port = refused.getsockname()[1]
    one_connection = create_async_engine(
        db.sqlalchemy_url(settings.database_url), pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    app = FastAPI()
    install_error_handlers(app)

    async def database_down() -> None:
        await psycopg.AsyncConnection.connect(
            f"host=127.0.0.1 port={refused_port} user=postgres connect_timeout=2"
        )

    @app.get("/peer")
    async def peer(request: Request) -> dict[str, int]:
        assert request.client is not None
        return {"port": request.client.port}

    @app.get("/postgres-refused")
    async def postgres_refused() -> None:
        await database_down()

    @app.get("/postgres-refused-in-a-dependency", dependencies=[Depends(database_down)])
    async def in_dependency() -> None:
        return None

    @app.get("/pool-exhausted")
    async def pool_exhausted() -> None:
        async with one_connection.connect() as held:
            await held.execute(text("SELECT 1"))
            async with one_connection.connect() as second:  # waits 0.2 s, then TimeoutError
                await second.execute(text("SELECT 1"))

    @app.get("/redis-silent")
    async def redis_silent() -> None:
        async with _silent_port() as port:
            client = Redis(host="127.0.0.1", port=port, socket_timeout=0.2)
            try:
                await client.get("anything")
            finally:
                await client.aclose()

    @app.get("/redis-refused")
    async def redis_refused() -> None:
        client = Redis(host="127.0.0.1", port=refused_port, socket_connect_timeout=1)
        try:
            await client.get("anything")
        finally:
            await client.aclose()

    @app.get("/queue-wrapped")
    async def queue_wrapped() -> None:
        # procrastinate wraps the driver's error; the cause is what counts.
        try:
            await database_down()
        except psycopg.OperationalError as exc:
            raise procrastinate.exceptions.ConnectorException("defer failed") from exc

    @app.get("/grouped")
    async def grouped() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(redis_refused())

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug, not an outage")

    down = [
        "/postgres-refused",
        "/postgres-refused-in-a-dependency",
        "/pool-exhausted",
        "/redis-silent",
        "/redis-refused",
        "/queue-wrapped",
        "/grouped",
    ]
    caplog.set_level(logging.INFO)
    try:
        async with _served(app) as http:
            first = (await http.get("/peer")).json()["port"]
            answers = {path: await http.get(path) for path in [*down, "/bug"]}
            last = (await http.get("/peer")).json()["port"]
    finally:
        refused.close()
        await one_connection.dispose()

    for path in down:
        response = answers[path]
        assert response.status_code == 503, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == str(DEPENDENCY_RETRY_AFTER_SECONDS)
        assert response.json()["code"] == "dependency_unavailable"
    assert answers["/bug"].status_code == 500
    assert "a bug" not in answers["/bug"].text
    assert first == last  # the same connection all along: no error closed it
    # Answered in the app, never re-raised to the server, which would log the traceback a
    # second time ("Exception in ASGI application") and close the connection (see `first`).
    assert not [r for r in caplog.records if r.name.startswith("uvicorn") and r.exc_info]
