"""An open-loop load generator: GET one URL at a fixed offered rate, latency from the moment
each request was due (not from when it went out), so a server that falls behind shows its
queue in p99 instead of silently slowing the generator down (wrk2's "coordinated omission").

Debian has no wrk2, and wrk itself is closed-loop: 32 connections each wait for their answer,
so a slow server is offered less. This is the small substitute, run in its own process:
asyncio protocols on uvloop over keep-alive connections, pre-built request bytes, no HTTP
library. At 500 requests/s it costs a few percent of one core (it reports its own CPU time).

    python -m bench.openloop URL RATE SECONDS [Header: value ...]   -> one JSON line on stdout
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from urllib.parse import urlsplit

# Connections, as wrk2 -c32 would hold: a server that falls behind sees at most 32 requests
# at once (as in the closed-loop runs), and due requests wait here for a free connection,
# that wait counting in their latency. A connection the server closes is replaced.
START_CONNECTIONS = 32
MAX_CONNECTIONS = 32
# After the last request is due, answers still out are awaited this long, then counted lost.
DRAIN_SECONDS = 10.0


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        status = _complete_response(self.buffer)
        if status is not None and self.waiter and not self.waiter.done():
            head = bytes(self.buffer[:2048]).lower()
            if head.startswith(b"http/1.0") or b"connection: close" in head:
                self.closed = True  # the server said so: never reused, even before it goes
            self.waiter.set_result(status)

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        self.buffer.clear()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def _complete_response(buffer: bytearray) -> int | None:
    """The status code once the whole response is in the buffer (Content-Length or chunked)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1").lower()
    body = len(buffer) - end - 4
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            return int(head[9:12]) if buffer.endswith(b"0\r\n\r\n") else None
    return int(head[9:12]) if body >= length else None


async def run(url: str, rate: float, seconds: float, headers: list[str]) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    raw = "".join(
        [f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n", *(h + "\r\n" for h in headers), "\r\n"]
    ).encode()
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    opened = peak = 0

    async def connect() -> _Connection:
        nonlocal opened, peak
        opened += 1
        peak = max(peak, opened)
        try:
            _, protocol = await loop.create_connection(_Connection, host, port)
        except BaseException:
            opened -= 1
            raise
        return protocol

    for _ in range(START_CONNECTIONS):
        idle.put_nowait(await connect())

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}

    async def one(due: float) -> None:
        nonlocal opened
        connection = None
        try:
            while True:
                if idle.empty() and opened < MAX_CONNECTIONS:
                    connection = await connect()
                else:
                    connection = await idle.get()
                if not connection.closed:
                    break
                opened -= 1  # closed while idle: make room for a new one
                connection = None
            status = await connection.request(raw)
        except Exception as exc:  # counted and reported, never fatal to the run
            if connection is not None:
                opened -= 1  # it broke under this request: never reused
            kind = type(exc).__name__
            errors[kind] = errors.get(kind, 0) + 1
            return
        latencies.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1
        if connection.closed:
            opened -= 1
        else:
            idle.put_nowait(connection)

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    total = int(rate * seconds)
    started = time.perf_counter()
    tasks = []
    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    _, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    latencies.sort()

    def percentile(p: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {
        "offered_rate": rate,
        "sent": total,
        "answered": len(latencies),
        "requests_per_second": len(latencies) / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "non_2xx": len(latencies) - ok,
        "errors": sum(errors.values()) + len(pending),
        "error_kinds": errors,
        "connections": peak,
        "cpu_seconds": round(cpu, 2),
        "cpu_share_of_one_core": round(cpu / elapsed, 3),
    }


def main() -> None:
    url, rate, seconds, *headers = sys.argv[1:]
    coroutine = run(url, float(rate), float(seconds), headers)
    try:
        import uvloop

        result = uvloop.run(coroutine)
    except ImportError:
        result = asyncio.run(coroutine)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
