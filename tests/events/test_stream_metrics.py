"""An event stream's life is not request latency: the histogram gets its time to headers when
they go out, and its one access line, written when it ends, says both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import REGISTRY

from refit.logs import RequestMiddleware
from tests.foundation.test_request_middleware import json_log  # noqa: F401  (a fixture)

ROUTE = "/stream-probe"
OPEN_SECONDS = 0.3


def _latency(stat: str) -> float:
    labels = {"method": "GET", "route": ROUTE}
    return REGISTRY.get_sample_value(f"refit_http_request_duration_seconds_{stat}", labels) or 0


async def test_a_stream_counts_its_time_to_headers_and_logs_its_whole_life(json_log):  # noqa: F811
    lines, _ = json_log
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b": opened\n\n"
        await release.wait()
        yield b"data: bye\n\n"

    app = FastAPI()
    app.get(ROUTE)(lambda: StreamingResponse(body(), media_type="text/event-stream"))
    app.add_middleware(RequestMiddleware)

    headers_out = asyncio.Event()
    sent: list[dict] = []
    requested = asyncio.Event()

    async def receive() -> dict:
        if not requested.is_set():
            requested.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.start":
            headers_out.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": ROUTE,
        "raw_path": ROUTE.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("test", 80),
        "client": ("127.0.0.1", 50000),
    }
    count, total = _latency("count"), _latency("sum")
    started = time.perf_counter()
    serving = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(headers_out.wait(), 10)
    to_headers = time.perf_counter() - started

    # Observed as the headers went out, while the stream is still open.
    assert _latency("count") == count + 1
    observed = _latency("sum") - total
    assert 0 < observed <= to_headers
    assert not [line for line in lines() if line["event"] == "http.request"]

    await asyncio.sleep(OPEN_SECONDS)  # the stream's life: what must not count as latency
    release.set()
    await asyncio.wait_for(serving, 10)
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}

    assert _latency("count") == count + 1  # not observed again at the end
    (line,) = [line for line in lines() if line["event"] == "http.request"]
    assert line["route"] == ROUTE and line["status"] == 200
    assert abs(line["duration_ms"] - observed * 1000) <= 0.01  # the same, rounded
    assert line["stream_ms"] >= OPEN_SECONDS * 1000 > line["duration_ms"]
