"""The red team on refit/bounded_head.py `BoundedHeadProtocol` (uvicorn's httptools protocol
with each request's head bounded to HEAD_BYTES and HEAD_SECONDS): pipelined and keep-alive
requests, bodies in the same read as a head, 100-continue, chunked uploads, a client gone
mid-head, an idle keep-alive connection, graceful shutdown with a half-sent head."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

import pytest

from tests.security.served_app import Served, served_app

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def served(settings, monkeypatch) -> AsyncIterator[Served]:
    async def slow() -> dict[str, str]:
        await asyncio.sleep(0.6)
        return {"slow": "done"}

    async with served_app(settings, monkeypatch, {"/atk/slow": slow}) as served:
        yield served


def _statuses(answer: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]


async def _read_until_quiet(reader: asyncio.StreamReader, wait: float) -> tuple[bytes, bool]:
    """What arrives until the peer closes (True) or is silent for `wait` seconds (False)."""
    got = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), wait)
        except TimeoutError:
            return got, False
        except ConnectionError:
            return got, True
        if not chunk:
            return got, True
        got += chunk


async def _writes(port: int, *parts: bytes, pause: float = 0.3, wait: float = 1.5) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(pause)
        return (await _read_until_quiet(reader, wait))[0]
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


_GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def _pad(size: int) -> bytes:
    return b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(size // 1012))


# Found by this file, fixed since (was):
# BoundedHeadProtocol.data_received (refit/bounded_head.py) adds the length of the
# whole read to the head count when, after parsing, a head is still open: a read holding the
# end of request 1 (here its 40 KiB body) and the first bytes of pipelined request 2's head
# counts request 1's bytes as request 2's head. 40 KiB of body + 1 KiB of head, then 30 KiB
# more of headers: a 431 for a 31 KiB head (and request 1 answered, request 2 refused).
async def test_a_pipelined_requests_body_is_not_counted_as_the_next_head(served):
    body = b'{"pad": "' + b"a" * 40 * 1024 + b'"}'
    first = (
        b"POST /api/webhooks/shippo?token=wrong HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    second = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + _pad(31 * 1024) + b"\r\n"
    answer = await _writes(served.port, first + second[:1024], second[1024:-2], b"\r\n")
    assert _statuses(answer) == [401, 200], answer[:300]


# Found by this file, fixed since (was):
# the same count, with request 1's own (whole, 40 KiB) head in the read that began
# request 2's: two pipelined heads of 40 and 31 KiB, each well within 64 KiB, get a 431.
async def test_a_pipelined_requests_head_is_not_counted_as_the_next_head(served):
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + _pad(40 * 1024) + b"\r\n"
    second = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + _pad(31 * 1024) + b"\r\n"
    answer = await _writes(served.port, first + second[:1024], second[1024:-2], b"\r\n")
    assert _statuses(answer) == [200, 200], answer[:300]


async def test_keep_alive_heads_are_bounded_each_and_not_summed(served):
    near = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + _pad(60 * 1024) + b"\r\n"
    past = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + _pad(70 * 1024) + b"\r\n"
    # Three heads of 60 KiB on one connection, one at a time: each answered.
    assert _statuses(await _writes(served.port, near, near, near)) == [200, 200, 200]
    # A small request, then one past the bound: 431 for the second, and closed.
    answer = await _writes(served.port, _GET, past[:-2], b"\r\n", wait=3)
    assert _statuses(answer) == [200, 431], answer[:300]


# Found by this file, fixed since (was):
# BoundedHeadProtocol.data_received counts a read only when, after parsing it, a
# head is still open: a head past HEAD_BYTES that arrives whole in one read (uvloop reads up
# to 256 KiB) is never counted, so a 100 KiB head sent in one write is answered by the app
# (200), not 431. The bound is HEAD_BYTES plus one read, and a head within one read is free.
async def test_a_head_past_the_bound_in_one_write_is_refused(served):
    past = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + _pad(100 * 1024) + b"\r\n"
    assert _statuses(await _writes(served.port, past, wait=3)) == [431]


async def test_a_chunked_upload_and_100_continue_are_answered_by_the_app(served):
    head = (
        b"POST /api/webhooks/shippo?token=wrong HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    payload = b'{"pad": "' + b"a" * 300 * 1024 + b'"}'
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + 8192]), payload[i : i + 8192])
        for i in range(0, len(payload), 8192)
    )
    assert _statuses(await _writes(served.port, head + chunks + b"0\r\n\r\n" + _GET)) == [
        401,
        200,
    ]
    body = b'{"pad": "' + b"b" * 200 * 1024 + b'"}'
    expect = (
        b"POST /api/webhooks/shippo?token=wrong HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    answer = await _writes(served.port, expect, body, _GET)
    assert [s for s in _statuses(answer) if s != 100] == [401, 200], answer[:300]


async def test_a_slow_answer_does_not_close_pipelined_requests(served):
    # The app answers the first after 0.6 s; three more wait behind it, their heads whole.
    requests = b"GET /atk/slow HTTP/1.1\r\nHost: x\r\n\r\n" * 4
    answer = await _writes(served.port, requests, wait=5)
    assert _statuses(answer) == [200] * 4, answer[:300]


# Found by this file, fixed since (was):
# after an answer, uvicorn's keep-alive timer is cancelled by any byte
# (`_unset_keepalive_if_required` in data_received) and re-armed only by the next answer;
# BoundedHeadProtocol arms its head timer only in on_message_begin, which llhttp does not call
# for the blank lines (CRLF) it skips before a request line, and `_reading_head` stays False
# after the previous head. So a client that sends "\r\n" after an answer leaves the
# connection with no timer at all: held for ever, the slowloris the head timer was for.
async def test_a_blank_line_after_an_answer_does_not_hold_the_connection_for_ever(served):
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(_GET)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert _statuses(answer) == [200]
        writer.write(b"\r\n")
        await writer.drain()
        # Keep-alive (2 s) and head (2 s) bounds, with room: 6 s.
        _, closed = await _read_until_quiet(reader, 6)
        assert closed, "a connection idle after one blank line was held past both bounds"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_clients_gone_mid_head_and_refused_leave_no_connection_or_error(served, caplog):
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        _, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
        await writer.drain()
        writer.close()
    too_big = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + _pad(70 * 1024) + b"\r\n"
    assert _statuses(await _writes(served.port, too_big[:-2], b"\r\n", wait=3)) == [431]
    # Past every timer each of them armed (keep-alive and head: 2 s).
    await asyncio.sleep(2.5)
    assert not served.server.server_state.connections
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
    # And the server still answers.
    assert _statuses(await _writes(served.port, _GET)) == [200]


async def test_graceful_shutdown_with_a_half_sent_head(served):
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(_GET + b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert _statuses(answer) == [200]
        served.server.should_exit = True
        await asyncio.wait_for(asyncio.shield(served.task), 1.5)  # not the head's 2 s
        _, closed = await _read_until_quiet(reader, 1)
        assert closed
        assert not served.server.server_state.connections
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
