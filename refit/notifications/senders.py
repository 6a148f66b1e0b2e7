"""How a rendered message leaves: SMTP (REFIT_SMTP_URL) or, unset, a folder of .eml files.

The outbox folder (DATA_DIR/outbox) is the embedded default: one .eml file per message.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from refit.settings import Settings


class PermanentDeliveryError(Exception):
    """The server refused this message for good (5xx on a recipient or the content): retrying
    the same message cannot succeed."""


class EmailSender(Protocol):
    @property
    def name(self) -> str:
        """Recorded on the mail log row ("smtp", "outbox")."""
        ...

    async def send(self, message: EmailMessage, *, key: str) -> None:
        """Deliver `message`; `key` names it uniquely and stably (the mail log id)."""
        ...


@dataclass(frozen=True)
class SmtpSender:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    timeout: float = 30.0
    name: str = "smtp"

    @classmethod
    def from_url(cls, url: str) -> SmtpSender:
        """smtp://user:pass@host:587 (STARTTLS when the server offers it) or smtps://host:465
        (TLS from the first byte)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("REFIT_SMTP_URL must look like smtp://user:pass@host:port")
        use_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if use_tls else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=use_tls,
        )

    async def send(self, message: EmailMessage, *, key: str) -> None:
        try:
            await aiosmtplib.send(
                message,
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.use_tls,
                # None: upgrade with STARTTLS whenever the server offers it.
                start_tls=False if self.use_tls else None,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(500 <= refusal.code < 600 for refusal in exc.recipients):
                raise PermanentDeliveryError(str(exc)) from exc
            raise
        except aiosmtplib.SMTPDataError as exc:
            # Only the content's refusal is final; a refused sender or failed login is our
            # configuration, and the job keeps retrying until an operator fixes it.
            if 500 <= exc.code < 600:
                raise PermanentDeliveryError(str(exc)) from exc
            raise


@dataclass(frozen=True)
class OutboxSender:
    directory: Path
    name: str = "outbox"

    async def send(self, message: EmailMessage, *, key: str) -> None:
        await asyncio.to_thread(self._write, message.as_bytes(), key)

    def _write(self, data: bytes, key: str) -> None:
        # Written beside its final name and renamed: a reader never sees half a message, and
        # sending the same key again replaces the file instead of adding a second one.
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{key}.eml"
        partial = self.directory / f".{key}.eml.partial"
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, final)


def sender_for(settings: Settings) -> EmailSender:
    if settings.smtp_url:
        return SmtpSender.from_url(settings.smtp_url)
    return OutboxSender(settings.outbox_dir)
