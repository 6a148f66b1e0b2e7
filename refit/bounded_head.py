"""uvicorn's httptools protocol with each request's head bounded in size and time: bounds it
lacks and Granian had (a client could send headers without end, or one a minute, and hold
a process's memory or connections). refit.http_server serves every `refit api` with it.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A request's head (request line and headers) within this many bytes (else 431 and closed),
# and whole within this long of its first byte (else closed).
HEAD_BYTES = 64 * 1024  # a signed-in request's head is under 2 KiB
HEAD_SECONDS = 30


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (its cheapest parser; clients and the proxy in front speak
    HTTP/1.1) with each request's head bounded in size and time. A connection that never
    sends a request, or sends only blank lines between requests, is closed after the
    keep-alive timeout, as one idle after an answer is."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading_head = True
        self._head_size = 0  # the head's bytes the parser handed over: its line and headers
        self._head_reads = 0  # whole reads inside a head still open: what the parser holds
        self._began_in_read = False
        self._heads_read = 0
        self._head_too_large = False
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        self._began_in_read = False
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._reading_head and (not self._began_in_read or not self._heads_read):
            # A head still open after this read (a header without end, say): the parser
            # holds it. A read in which a later head began also held the end of the request
            # before it, so it is not counted; a connection's first holds nothing else.
            self._head_reads += len(data)
            if self._head_reads > HEAD_BYTES:
                self._refuse_head()
        elif not self._reading_head and self._idle() and self.timeout_keep_alive_task is None:
            # Bytes between requests (blank lines, which the parser skips) cancelled uvicorn's
            # idle timer, which it arms only after an answer: armed again.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head, self._began_in_read = True, True
        self._head_size = self._head_reads = 0
        self._head_timer.cancel()
        self._head_timer = self.loop.call_later(HEAD_SECONDS, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._heads_read += 1
        self._head_timer.cancel()
        if self._head_size > HEAD_BYTES:
            # Raised through the parser: uvicorn answers a parse error (send_400_response,
            # below) and reads no more of the connection; the app never sees the request.
            self._head_too_large = True
            raise _HeadTooLarge
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_timer.cancel()
        super().connection_lost(exc)

    def _idle(self) -> bool:
        return (self.cycle is None or self.cycle.response_complete) and not self.pipeline

    def _refuse_head(self) -> None:
        self._head_timer.cancel()
        self.transport.write(_HEAD_TOO_LARGE)
        self.transport.close()

    def _head_too_slow(self) -> None:
        if self._reading_head and not self.transport.is_closing():
            self.transport.close()


class _HeadTooLarge(Exception):
    pass


_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8"
    b"\r\ncontent-length: 32\r\nconnection: close\r\n\r\nRequest header fields too large."
)
