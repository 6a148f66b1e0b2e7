"""The mail outbox of the embedded default (REFIT_DATA_DIR/outbox, one .eml per message):
the list, newest first, and one message. Files are read in a thread, never on the loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from refit import resources
from refit.dashboard.render import page
from refit.dashboard.session import OperatorDep
from refit.errors import NotFound

router = APIRouter()

OUTBOX_LIMIT = 200
# A message's file name is its mail log key: nothing that could leave the folder.
_KEY = re.compile(r"[A-Za-z0-9._-]{1,200}")


@dataclass(frozen=True)
class Listed:
    key: str
    subject: str
    to: str
    written_at: dt.datetime


def _parse(path: Path) -> EmailMessage:
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(message, EmailMessage)
    return message


def _list(directory: Path) -> list[Listed]:
    if not directory.is_dir():
        return []
    files = sorted(directory.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True)
    found = []
    for path in files[:OUTBOX_LIMIT]:
        headers = _parse(path)
        found.append(
            Listed(
                key=path.stem,
                subject=str(headers.get("Subject", "")),
                to=str(headers.get("To", "")),
                written_at=dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC),
            )
        )
    return found


@router.get("/outbox", response_class=HTMLResponse)
async def outbox_page(request: Request, operator: OperatorDep) -> HTMLResponse:
    settings = resources.current().settings
    messages = await asyncio.to_thread(_list, settings.outbox_dir)
    return page(
        request,
        "outbox.html",
        messages=messages,
        directory=str(settings.outbox_dir),
        smtp=bool(settings.smtp_url),
    )


@router.get("/outbox/{key}", response_class=HTMLResponse)
async def outbox_message(key: str, request: Request, operator: OperatorDep) -> HTMLResponse:
    path = resources.current().settings.outbox_dir / f"{key}.eml"
    if not _KEY.fullmatch(key) or not await asyncio.to_thread(path.is_file):
        raise NotFound(f"No message {key} in the outbox", code="message_not_found")
    message = await asyncio.to_thread(_parse, path)
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    attachments = [
        (part.get_filename() or "attachment", part.get_content_type())
        for part in message.iter_attachments()
    ]
    return page(
        request,
        "outbox_message.html",
        key=key,
        headers=[(name, str(value)) for name, value in message.items()],
        text=text_part.get_content() if text_part is not None else None,
        html=html_part.get_content() if html_part is not None else None,
        attachments=attachments,
    )
