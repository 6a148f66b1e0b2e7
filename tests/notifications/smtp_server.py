"""A real SMTP server (aiosmtpd) on a free port, in the test's event loop, that records what
it receives. Other domains' tests can use it too: `async with smtp_server() as smtp: ...`."""

from __future__ import annotations

import asyncio
import email
import email.policy
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return str(part.get_content())


@dataclass
class SmtpRecorder:
    url: str = ""
    messages: list[Received] = field(default_factory=list)
    # Replies the server gives instead of accepting, consumed one per DATA / RCPT command.
    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    username: str | None = None
    password: str | None = None
    # A test that sets `release` keeps every DATA command waiting, the message received but
    # not yet answered, until it sets the event: the client is then in the middle of its send.
    # `waiting` is set as each one arrives there, `in_data` counts them.
    release: asyncio.Event | None = None
    waiting: asyncio.Event = field(default_factory=asyncio.Event)
    in_data: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.release is not None:
            self.in_data += 1
            self.waiting.set()
            await self.release.wait()
        if self.data_replies:
            return self.data_replies.pop(0)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.decode() if session.authenticated else None
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, login))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


@asynccontextmanager
async def smtp_server(
    username: str | None = None, password: str | None = None
) -> AsyncIterator[SmtpRecorder]:
    """Serve SMTP on 127.0.0.1:<free port>; with a username, AUTH is required."""
    recorder = SmtpRecorder(username=username, password=password)
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        # Plain-text AUTH is what we want to test here (loopback only): silence the warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return SMTP(
                recorder,
                hostname="smtp.test",
                authenticator=recorder.authenticate if username else None,
                auth_required=bool(username),
                auth_require_tls=False,
                loop=loop,
            )

    server = await loop.create_server(protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    credentials = (
        f"{quote(username, safe='')}:{quote(password or '', safe='')}@" if username else ""
    )
    recorder.url = f"smtp://{credentials}127.0.0.1:{port}"
    try:
        yield recorder
    finally:
        server.close()
        await server.wait_closed()
