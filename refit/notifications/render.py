"""Jinja2 templates → a MIME message (plain text + HTML alternative).

A template is a folder under templates/: `subject.txt`, `body.txt`, `body.html` (the HTML
extends `_layout.html`). Undefined variables are errors, so a missing context key fails the
job loudly instead of mailing a blank.

The context reaches a template as stored JSON: money, ids and times are strings. Templates
format money with `|money` and times with `|when`, which take the string or the value.

A context may name files to attach: `"attachments": [{"storage_key", "filename",
"content_type"}]`, keys of `refit.storage`. The send job reads them (`attachments_of`) and
passes their bytes to `build_message`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refit.settings import Settings
from refit.storage import content_type_for

if TYPE_CHECKING:
    from jinja2 import Environment

TEMPLATES_DIR = Path(__file__).parent / "templates"
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _money(value: Decimal | int | str) -> str:
    """A price as the template shows it: "1250.5", 1250.5 or Decimal("1250.50") → "1,250.50".
    None, or text that is not a number, raises: a price must never render blank."""
    return f"{Decimal(str(value)):,.2f}"


def _when(value: dt.datetime | str) -> str:
    """A datetime or its ISO text → "December 1, 2026 at 10:00 UTC"."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC)
    return f"{moment:%B} {moment.day}, {moment:%Y} at {moment:%H:%M} UTC"


@functools.cache
def _env() -> Environment:
    # jinja2 costs ~0.1 s of CPU at import: built when the first email is rendered, so an
    # API process that only defers emails never pays for it.
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["money"] = _money
    env.filters["when"] = _when
    return env


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Attachment:
    """A file of `refit.storage` sent with an email, under `filename`."""

    storage_key: str
    filename: str
    content_type: str


def attachments_of(context: dict[str, Any]) -> list[Attachment]:
    """The files an email's context names (none when it names none). A malformed entry
    raises: the job fails loudly rather than send without the file."""
    return [
        Attachment(
            storage_key=entry["storage_key"],
            filename=entry["filename"],
            content_type=entry.get("content_type") or content_type_for(entry["storage_key"]),
        )
        for entry in context.get("attachments") or []
    ]


def template_exists(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and all(
        (TEMPLATES_DIR / name / part).is_file() for part in ("subject.txt", "body.txt", "body.html")
    )


def render(settings: Settings, name: str, context: dict[str, Any]) -> RenderedEmail:
    if not template_exists(name):
        raise ValueError(f"unknown email template {name!r}")
    values = {"site_url": settings.public_url.rstrip("/"), **context}
    env = _env()
    subject = env.get_template(f"{name}/subject.txt").render(values)
    return RenderedEmail(
        # A header is one line: a newline in a context value must not become a new header.
        subject=" ".join(subject.split()),
        text=env.get_template(f"{name}/body.txt").render(values),
        html=env.get_template(f"{name}/body.html").render(values),
    )


def build_message(
    settings: Settings,
    *,
    email_id: uuid.UUID,
    recipient: str,
    rendered: RenderedEmail,
    created_at: dt.datetime,
    attachments: Sequence[tuple[Attachment, bytes]] = (),
) -> EmailMessage:
    """The MIME message. Its Message-ID and Date come from the mail log row, so every attempt
    of one email produces the same message (a duplicate, if one ever slips out, is
    recognisable as such by the receiving side)."""
    sender_domain = email.utils.parseaddr(settings.mail_from)[1].rpartition("@")[2] or "refit"
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = recipient
    message["Subject"] = rendered.subject
    message["Date"] = email.utils.format_datetime(created_at)
    message["Message-ID"] = f"<{email_id}@{sender_domain}>"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    # The first attachment turns the message into multipart/mixed: the text/HTML alternative
    # stays its body, the files follow it.
    for attachment, data in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        message.add_attachment(
            data, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return message
