"""The red team on the HTTP server, uvicorn again (refit/http_server.py): the real server with
the real options (`http_server.config`, the single process's `InLoopServer`) on a loopback
port, spoken to over raw sockets as a stranger would: requests that smuggle a second one
(Content-Length with Transfer-Encoding, two Content-Lengths), headers without end, a client
that never finishes its headers, X-Forwarded-For rotated against a per-IP limit, an error
inside the app, and `refit api` on a port already taken.

Refusal: a 400 (never a 500, never two answers for one request), the per-IP limit counting
the TCP peer, no `server:` header, the error answered by our handler and never logged by
uvicorn, exit 3 with one line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.processes import exit_status, start_refit
from tests.security.served_app import Served, served_app

pytestmark = pytest.mark.timeout(60)

_WALLET = "11111111111111111111111111111111"  # a valid base58 public key (32 bytes)


@pytest.fixture
async def served(settings, monkeypatch) -> AsyncIterator[Served]:
    async def boom() -> None:
        raise RuntimeError("the red team's error inside the app")

    async with served_app(
        settings, monkeypatch, {"/atk/boom": boom}, rate_limit_nonce_per_ip="2/minute"
    ) as served:
        yield served


async def _exchange(port: int, raw: bytes, *, wait: float = 2.0) -> bytes:
    """Send `raw` on one connection; everything the server answered until it closed or was
    silent for `wait` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        got = b""
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), wait)
            except TimeoutError:
                break
            if not chunk:
                break
            got += chunk
        return got
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _statuses(answer: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]


_SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Content-Length: 0\r\nContent-Length: 39\r\n",
        b"Content-Length: 5, 39\r\n",
        b"Content-Length : 0\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n",
        b"Content-Length: +5\r\n",
    ],
    ids=["cl-te", "te-cl", "two-cl", "cl-list", "space-colon", "te-te", "bad-te", "plus-cl"],
)
async def test_a_request_that_smuggles_another_gets_one_400(served, head):
    body = b"0\r\n\r\n" + _SMUGGLED
    raw = b"POST /api/auth/nonce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    answer = await _exchange(served.port, raw + head + b"\r\n" + body)
    statuses = _statuses(answer)
    assert statuses == [400], answer[:600]


async def test_a_chunk_size_past_any_integer_is_a_400(served):
    raw = (
        b"POST /api/auth/nonce HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffffffffff1\r\nabc\r\n0\r\n\r\n"
    )
    assert _statuses(await _exchange(served.port, raw)) == [400]


# Found by this file: uvicorn's httptools protocol puts no bound on a request's headers (one
# connection made the process hold 16 MiB of them, then answered 200; Granian refused past
# ~400 KiB, nginx past 8-32 KiB). bounded_head.BoundedHeadProtocol answers 431 past HEAD_BYTES.
async def test_headers_without_end_are_refused_before_they_are_all_read(served):
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    sent = 0
    refused = False
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        line = b"X-Pad: " + b"a" * 8185 + b"\r\n"  # 8 KiB a header, as many as it takes
        while sent < 16 * 1024 * 1024:
            try:
                writer.write(line * 64)
                await asyncio.wait_for(writer.drain(), 5)
            except (ConnectionError, TimeoutError):
                refused = True
                break
            sent += len(line) * 64
        if not refused:
            writer.write(b"\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(4096), 10)
            refused = not answer or _statuses(answer)[:1] in ([400], [431])
            assert refused, f"{sent} bytes of headers read and answered: {answer[:120]!r}"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    assert refused and sent < 1024 * 1024, sent


async def test_a_large_body_sent_with_its_head_in_one_write_is_no_large_head(served):
    """An upload whose head and body arrive in the same reads (300 KiB, well past the head's
    64 KiB bound): the head is small, so the request is answered by the app (here 401: the
    webhook's token is wrong), never 431."""
    body = b'{"event": "track_updated", "pad": "' + b"a" * 300 * 1024 + b'"}'
    head = (
        b"POST /api/webhooks/shippo?token=wrong HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    answer = await _exchange(served.port, head + body)
    assert _statuses(answer) == [401], answer[:200]


# Found by this file: no timer ran while uvicorn waited for a request's headers (its keep-alive
# timer is armed only after an answer and cancelled by any byte), so a connection that said
# nothing, or dripped a header line at a time, was held for ever (slowloris).
# bounded_head.BoundedHeadProtocol closes one silent past the keep-alive timeout, and one whose
# head is not whole HEAD_SECONDS after its first byte.
async def test_a_client_that_never_finishes_its_headers_is_let_go(served):
    silent = await asyncio.open_connection("127.0.0.1", served.port)
    dripping = await asyncio.open_connection("127.0.0.1", served.port)
    dripping[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    deadline = time.monotonic() + 8
    closed = {"silent": False, "dripping": False}
    try:
        while time.monotonic() < deadline and not all(closed.values()):
            with contextlib.suppress(ConnectionError):
                dripping[1].write(b"X-Drip: 1\r\n")
                await dripping[1].drain()
            for name, (reader, _) in (("silent", silent), ("dripping", dripping)):
                if not closed[name]:
                    with contextlib.suppress(TimeoutError):
                        got = await asyncio.wait_for(reader.read(4096), 0.5)
                        closed[name] = got == b"" or b"HTTP/1.1 4" in got
    finally:
        for _, writer in (silent, dripping):
            writer.close()
    assert closed == {"silent": True, "dripping": True}, "held open past 3 keep-alive periods"


async def test_x_forwarded_for_from_loopback_does_not_dodge_the_per_ip_limit(served):
    base = f"http://127.0.0.1:{served.port}"
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=15, limits=limits) as http:

        async def ask(index: int) -> httpx.Response:
            return await http.post(
                "/api/auth/nonce",
                json={"wallet_address": _WALLET},
                headers={
                    "X-Forwarded-For": f"203.0.113.{index}",
                    "X-Real-IP": f"198.51.100.{index}",
                },
            )

        # Limit 2 a minute per IP: three at the same moment, each naming another client.
        answers = await asyncio.gather(*(ask(i) for i in range(1, 4)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 200, 429], [a.text[:200] for a in answers]
        assert (await ask(9)).status_code == 429
    for answer in answers:
        assert "server" not in answer.headers


async def test_an_error_inside_the_app_is_ours_to_answer_never_uvicorns_to_log(served, caplog):
    caplog.set_level(logging.DEBUG, logger="uvicorn")
    request = b"GET /atk/boom HTTP/1.1\r\nHost: x\r\n\r\n"
    # Two requests on one keep-alive connection: the error does not close it.
    answer = await _exchange(served.port, request + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _statuses(answer) == [500, 200], answer[:600]
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head.lower()
    assert b"server:" not in answer.lower()
    assert b"the red team's error" not in rest  # no exception text for the stranger
    # uvicorn's own lines do reach caplog here: its warning on a malformed request is seen.
    assert _statuses(await _exchange(served.port, b"GET / HTTP/1.1\r\nHost x\r\n\r\n")) == [400]
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")]
    assert "Invalid HTTP request received." in logged, logged
    assert not [m for m in logged if "Exception in ASGI application" in m], logged


async def test_refit_api_on_a_taken_port_exits_3_with_one_line(settings, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))}
    env.update(
        REFIT_ENV="test",
        REFIT_DATABASE_URL=settings.database_url,
        REFIT_REDIS_URL=settings.redis_url or "",
        REFIT_DATA_DIR=str(tmp_path / "data"),
        REFIT_HOST="127.0.0.1",
        REFIT_PORT=str(port),
        REFIT_LOG_FORMAT="json",
    )
    log_path = tmp_path / "api.log"
    process = start_refit(["api", "--workers", "2"], env, log_path)
    try:
        code = await exit_status(process, 50)
    finally:
        taken.close()
    output = log_path.read_text()
    assert code == 3, output[-3000:]
    events = []
    for raw in output.splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(raw).get("event"))
    assert events.count("refit.cannot_listen") == 1, output[-3000:]
    assert "Traceback" not in output and "Started server process" not in output, output[-3000:]
