"""Many live order streams, as browsers open them: a ticket (POST .../events/ticket with the
seller's token), then the stream (GET .../events?ticket=...), each on its own connection; then
one status change, and the time it takes to reach every stream.

Run in its own process, so the streams' client costs no time on the bench's event loop:
asyncio streams on uvloop, pre-built request bytes, no HTTP library. It also reads the API
process group's resident memory (/proc) before the streams open and once they are all open.

    python -m bench.sse_clients API ORDER_ID STREAMS SELLER_TOKEN MOVE_URL OPERATOR_TOKEN PGID
        -> one JSON line on stdout
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

# Streams being opened at once (a page load's worth of browsers, not all 1,000 in one go).
OPENING_AT_ONCE = 50
# How long every stream gets to hear the change before the missing ones are counted.
DELIVERY_TIMEOUT_SECONDS = 30.0
OPEN_TIMEOUT_SECONDS = 60.0


def _group(pgid: int) -> list[list[str]]:
    """/proc/<pid>/stat fields (from the state on) of the live processes in group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(fields)
    return members


def group_rss_kb(pgid: int) -> int:
    """Resident memory of the process group `pgid`, in KB."""
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    return sum(int(f[21]) for f in _group(pgid)) * page_kb


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) the process group `pgid` has used so far."""
    return sum(int(f[11]) + int(f[12]) for f in _group(pgid)) / os.sysconf("SC_CLK_TCK")


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response with a Content-Length (the ticket, the move, a refusal)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


class Stream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""
        self.heard_at: float | None = None


async def open_stream(host: str, port: int, path: str, auth: str) -> Stream | int:
    """An open stream past its first event (the current status), or the refusal's status."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"POST {path}/ticket HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    status, body = await _response(reader)
    if status != 200:
        writer.close()
        return status
    ticket = json.loads(body)["ticket"]
    writer.write(
        f"GET {path}?ticket={ticket} HTTP/1.1\r\nHost: {host}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    if status != 200:
        writer.close()
        return status
    stream = Stream(reader, writer)
    while b"event: status" not in stream.buffer:
        chunk = await reader.read(65536)
        if not chunk:
            return 0
        stream.buffer += chunk
    stream.buffer = b""
    return stream


async def hear(stream: Stream, marker: bytes) -> None:
    """Until the change (`marker`, in an event's data) arrives on this stream."""
    while marker not in stream.buffer:
        chunk = await stream.reader.read(65536)
        if not chunk:
            return
        # Only the tail can hold a marker split across reads.
        stream.buffer = stream.buffer[-len(marker) :] + chunk
    stream.heard_at = time.perf_counter()


async def run(
    api: str,
    order_id: str,
    count: int,
    seller_token: str,
    move_url: str,
    operator_token: str,
    pgid: int,
) -> dict[str, object]:
    parts = urlsplit(api)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = f"/api/orders/{order_id}/events"
    auth = f"Bearer {seller_token}"
    rss_before = group_rss_kb(pgid)
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    refusals: dict[str, int] = {}

    async def one() -> Stream | None:
        async with gate:
            try:
                opened = await open_stream(host, port, path, auth)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                opened = type(exc).__name__  # type: ignore[assignment]
        if isinstance(opened, Stream):
            return opened
        refusals[str(opened)] = refusals.get(str(opened), 0) + 1
        return None

    began = time.perf_counter()
    async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
        streams = [s for s in await asyncio.gather(*(one() for _ in range(count))) if s]
    opened_in = time.perf_counter() - began
    await asyncio.sleep(1)  # the server settles; its memory then holds every open stream
    rss_open = group_rss_kb(pgid)

    marker = b'"status":"cancelled"'
    listening = [asyncio.create_task(hear(s, marker)) for s in streams]
    move = urlsplit(move_url)
    reader, writer = await asyncio.open_connection(move.hostname, move.port)
    cpu = group_cpu_seconds(pgid)
    sent_at = time.perf_counter()
    writer.write(
        f"POST {move.path} HTTP/1.1\r\nHost: {move.hostname}\r\n"
        f"Authorization: Bearer {operator_token}\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\n\r\n{}".encode()
    )
    move_status, _ = await _response(reader)
    answered_at = time.perf_counter()
    writer.close()
    await asyncio.wait(listening, timeout=DELIVERY_TIMEOUT_SECONDS)
    cpu = group_cpu_seconds(pgid) - cpu
    for task in listening:
        task.cancel()
    for s in streams:
        s.writer.close()
    delays = sorted((s.heard_at - sent_at) * 1000 for s in streams if s.heard_at is not None)

    def percentile(p: float) -> float | None:
        return delays[min(len(delays) - 1, int(p * len(delays)))] if delays else None

    return {
        "streams": count,
        "opened": len(streams),
        "refused": refusals,
        "opened_in_seconds": round(opened_in, 2),
        "move_status": move_status,
        "move_ms": round((answered_at - sent_at) * 1000, 1),
        "heard": len(delays),
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "max_ms": delays[-1] if delays else None,
        "cpu_seconds": round(cpu, 3),
        "rss_before_kb": rss_before,
        "rss_open_kb": rss_open,
    }


def main() -> None:
    api, order_id, count, seller, move_url, operator, pgid = sys.argv[1:]
    coroutine = run(api, order_id, int(count), seller, move_url, operator, int(pgid))
    try:
        import uvloop

        result = uvloop.run(coroutine)
    except ImportError:
        result = asyncio.run(coroutine)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
