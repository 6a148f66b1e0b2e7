"""A TCP proxy in front of PostgreSQL or Redis that a test can break, on loopback, for a server
on TCP or on a unix socket (the embedded default's):

- `cut()`: every connection through it is dropped and new ones refused, the way a server
  restart or a network blip looks to the service;
- `black_hole()`: nothing is forwarded either way any more; new connections are accepted and
  never answered, open ones stay open and silent (or are dropped first, `drop_open=True`): a
  server, host or pooler that hangs without closing anything. Neither keepalives nor the TCP
  user timeout can tell: the proxy's kernel acknowledges every byte;
- `restore()`: forwarding again; what a black hole held back goes through, as after a
  hung server resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class Target:
    """Where the proxy forwards to: a TCP address, or a unix socket's path."""

    host: str = "127.0.0.1"
    port: int = 0
    path: str | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.path is not None:
            return await asyncio.open_unix_connection(self.path)
        return await asyncio.open_connection(self.host, self.port)


class CuttableProxy:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.port = 0
        self.accepted = 0  # connections accepted, in every state
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.cut_off = False
        self._forwarding = asyncio.Event()
        self._forwarding.set()

    @classmethod
    def for_database(cls, url: str) -> CuttableProxy:
        """In front of the PostgreSQL of a URL: a TCP host and port, or a socket directory
        (`?host=/dir`, libpq's way), whose socket is `<dir>/.s.PGSQL.<port>`."""
        parsed = make_url(url)
        host = parsed.query.get("host") or parsed.host or "127.0.0.1"
        assert isinstance(host, str), "one host"
        port = parsed.port or 5432
        if host.startswith("/"):
            return cls(Target(path=f"{host}/.s.PGSQL.{port}"))
        return cls(Target(host=host, port=port))

    @classmethod
    def for_redis(cls, url: str) -> CuttableProxy:
        """In front of the Redis of a URL: redis://host:port or unix:///path."""
        parsed = urlsplit(url)
        if parsed.scheme == "unix":
            return cls(Target(path=parsed.path))
        assert parsed.scheme == "redis", f"a proxy cannot speak TLS: {parsed.scheme}"
        return cls(Target(host=parsed.hostname or "127.0.0.1", port=parsed.port or 6379))

    def database_url(self, url: str) -> str:
        """`url` (a PostgreSQL URL) leading through this proxy."""
        parsed = make_url(url)
        query = {k: v for k, v in parsed.query.items() if k != "host"}
        return parsed.set(host="127.0.0.1", port=self.port, query=query).render_as_string(
            hide_password=False
        )

    def redis_url(self, url: str) -> str:
        """`url` (a Redis URL) leading through this proxy, to the same database number."""
        parsed = urlsplit(url)
        if parsed.scheme == "unix":
            database = parse_qs(parsed.query).get("db", ["0"])[0]
        else:
            database = parsed.path.strip("/") or "0"
        return f"redis://127.0.0.1:{self.port}/{database}"

    async def start(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        sock: socket.socket = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        return self

    async def stop(self) -> None:
        self.cut()
        self._forwarding.set()  # releases held connections, which find themselves cut
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self.cut_off = True
        self._drop_open()

    def black_hole(self, *, drop_open: bool = False) -> None:
        """Forward nothing either way: new connections are accepted and never answered; open
        ones stay open and silent, or are dropped first with `drop_open`."""
        self._forwarding.clear()
        if drop_open:
            self._drop_open()

    def restore(self) -> None:
        self.cut_off = False
        self._forwarding.set()

    def _drop_open(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.cut_off:
            writer.transport.abort()
            return
        self._writers.add(writer)
        await self._forwarding.wait()  # a black hole: accepted, never answered
        if self.cut_off or writer.transport.is_closing():
            self._writers.discard(writer)
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await self.target.open()
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                # In a black hole what was read is held here, then sent on after `restore()`.
                await self._forwarding.wait()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
