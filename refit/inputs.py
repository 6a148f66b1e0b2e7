"""Input nothing behind us can hold, refused at the door with a 400 instead of a 500 deep inside.

Two kinds, each checked in one place for every surface (the API and the dashboard):

- **Text PostgreSQL cannot store**: a NUL character (text and jsonb refuse it) and an unpaired
  UTF-16 surrogate (not Unicode text at all: encoding it to UTF-8 fails). JSON bodies can
  carry them only as `\\u0000` / `\\ud800` escapes (a raw control byte or a surrogate's bytes
  make invalid JSON or UTF-8), so the body guard finds them in the bytes; query strings, path
  parameters, headers and form fields are checked by `refuse_unstorable_input`, a dependency of
  every route of both apps. Answered `400 invalid_data`, as the database's own refusal is.
- **JSON nested too deep**: Python's json module and pydantic recurse per level, so a body
  nested thousands deep raises RecursionError while parsed or validated. `JsonGuard` counts the
  nesting in the raw bytes before anything parses them (`400 json_too_deep`).

The size of every body is bounded before either, by errors.BodyLimit.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

# Deeper than any body we take: the browser export (document > orders > order > quote, label
# > ...) and Shippo's webhook (body > data > tracking_history > event > location) nest about
# five levels, the API's own bodies two or three. An order of magnitude above that, and far
# below Python's recursion limit (1000), which json.loads and pydantic would otherwise reach.
MAX_JSON_DEPTH = 64

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A JSON string, or what is left of an unclosed one: it always matches at a quote, so removing
# strings is linear whatever the body (no match that fails and is tried again further on).
_STRING = re.compile(rb'"[^"\\]*(?:\\.?[^"\\]*)*(?:"|\Z)', re.DOTALL)
# Only the brackets of what is left, all made square: their nesting is the JSON's.
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
# The escapes that decode to unstorable text: \u0000, a high surrogate (with its low half,
# which makes it one character beyond the BMP, or alone) and a lone low surrogate.
_SUSPECT_ESCAPE = re.compile(
    rb"\\u(?:0000|[dD][89abAB][0-9a-fA-F]{2}(?P<low>\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
    rb"|[dD][c-fC-F][0-9a-fA-F]{2})"
)


class InputRefused(StarletteHTTPException):
    """A 400 (or 415) with its problem code. An HTTPException because it may be raised while FastAPI
    reads the body (from the guarded `receive`), and FastAPI passes only those through its
    body parsing; each app's own handler then renders it (problem+json, or a page)."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(status, detail)
        self.code = code


def unstorable_text(detail: str) -> InputRefused:
    return InputRefused(
        "invalid_data", f"The request contains text that cannot be stored: {detail}"
    )


def has_unstorable(text: str) -> bool:
    """A NUL or an unpaired surrogate: what PostgreSQL's text (and jsonb) cannot hold."""
    return _UNSTORABLE.search(text) is not None


def json_problem(body: bytes) -> InputRefused | None:
    """What makes this (JSON) body one we refuse before parsing it, if anything. Linear in the
    body's size, in C loops (a 2 MB export takes a fraction of what json.loads takes)."""
    if b"\x00" in body:
        # Never in a JSON text (RFC 8259: UTF-8, control characters escaped); a UTF-16 body,
        # which json.loads would otherwise guess and decode, has them everywhere.
        return InputRefused("malformed_json", "The request body is not JSON: it has a NUL byte")
    if b"\\u" in body:
        refused = _escape_problem(body)
        if refused is not None:
            return refused
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return None  # cannot nest deeper, whatever is in strings
    brackets = _STRING.sub(b"", body).translate(_SQUARE, _NOT_BRACKETS)
    # Each pass removes the innermost pairs (the leaves): as many passes as levels.
    for _level in range(MAX_JSON_DEPTH):
        if not brackets:
            return None
        fewer = brackets.replace(b"[]", b"")
        if fewer == brackets:
            break
        brackets = fewer
    if not brackets:
        return None
    if brackets.replace(b"[]", b"") == brackets:
        # Unmatched brackets outside strings: not JSON; refused here, as the parser would
        # recurse into them first.
        return InputRefused("malformed_json", "The request body is not JSON: unbalanced brackets")
    return InputRefused(
        "json_too_deep", f"The request body's JSON nests deeper than {MAX_JSON_DEPTH} levels"
    )


def _escape_problem(body: bytes) -> InputRefused | None:
    pos = 0
    while (found := _SUSPECT_ESCAPE.search(body, pos)) is not None:
        start = found.start()
        # `\\u0000` is a backslash, then the text "u0000": the escape is real only when an
        # odd number of backslashes leads to the u.
        run = start
        while run > 0 and body[run - 1] == 0x5C:
            run -= 1
        if (start - run) % 2 == 1:
            pos = start + 2  # the next candidate may start inside this one
            continue
        unit = int(body[start + 2 : start + 6], 16)
        if unit == 0:
            return unstorable_text("a NUL character (\\u0000)")
        if found.group("low") is None:
            return unstorable_text(f"an unpaired surrogate (\\u{unit:04x})")
        pos = found.end()
    return None


def refuse_hostile_json(body: bytes) -> None:
    """Raise the refusal of `body`, if any (for endpoints that parse the raw body themselves)."""
    refused = json_problem(body)
    if refused is not None:
        raise refused


def is_form(scope: Any) -> bool:
    """A form body (checked field by field by `refuse_unstorable_input`, not as JSON: a file in
    it may hold any bytes)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower().decode("latin-1")
            return media in FORM_TYPES
    return False


async def body_to_parse_as_json(request: Request) -> bytes:
    """The raw body of an endpoint that parses it as JSON itself, checked by JsonGuard. A body
    that says it is a form is refused (415): the guard does not read forms as JSON, and the
    form's fields were parsed from the stream already (refuse_unstorable_input)."""
    if is_form(request.scope):
        raise InputRefused(
            "unsupported_media_type", "The body must be JSON (application/json)", status=415
        )
    return await request.body()


class JsonGuard:
    """Every request body that is not a form is JSON in this app: it is checked (json_problem)
    before the app gets its last piece, so nothing parses a body we refuse. The refusal is
    raised from `receive`, inside the app, whose handlers answer it. Bodies are already held
    whole by whoever reads them (FastAPI, `request.body()`), within errors.BodyLimit."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or is_form(scope):
            await self.app(scope, receive, send)
            return
        pieces: list[bytes] = []

        async def checked() -> Any:
            message = await receive()
            if message["type"] != "http.request":
                return message
            piece = message.get("body", b"")
            if message.get("more_body", False):
                pieces.append(piece)
                return message
            body = b"".join([*pieces, piece]) if pieces else piece
            pieces.clear()
            if body:
                refuse_hostile_json(body)
            return message

        await self.app(scope, checked, send)


async def refuse_unstorable_input(request: Request) -> None:
    """Every route's first dependency (both apps): a NUL anywhere in the query string, the
    path, a header or a form field (a file's name included) is refused before the endpoint or
    its other dependencies run. Query strings are checked raw: `%00` there is exactly a NUL
    once decoded; a surrogate cannot come out of them (decoding replaces what is not UTF-8)."""
    scope = request.scope
    if b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
        raise unstorable_text("a NUL character in the query string")
    if "\x00" in scope["path"]:
        raise unstorable_text("a NUL character in the path")
    for _name, value in scope["headers"]:
        if b"\x00" in value:
            raise unstorable_text("a NUL character in a header")
    if is_form(scope):
        # Parsed once: FastAPI's Form() parameters and the CSRF check read the same form.
        for _key, field in (await request.form()).multi_items():
            text = (field.filename or "") if isinstance(field, UploadFile) else field
            if has_unstorable(_key) or has_unstorable(text):
                raise unstorable_text("a NUL character in a form field")
