"""Keyset pagination on (created_at, id), newest first: one cursor codec for every list.

A cursor is the position of the last row of a page, opaque to clients. Pages stay stable
while rows are added, and each page is one index range scan however deep the client goes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, tuple_

from refit.errors import BadRequest


class Positioned(Protocol):
    @property
    def created_at(self) -> dt.datetime: ...
    @property
    def id(self) -> uuid.UUID: ...


Row = TypeVar("Row", bound=Positioned)


def encode_cursor(created_at: dt.datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The (created_at, id) position a cursor stands for; a cursor we did not make is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = json.loads(raw)
        # Strings both, as we write them: uuid.UUID(5) raises AttributeError, not ValueError.
        if not isinstance(created_at, str) or not isinstance(row_id, str):
            raise TypeError("a cursor holds two strings")
        position = dt.datetime.fromisoformat(created_at), uuid.UUID(row_id)
        if position[0].tzinfo is None:
            raise ValueError("a cursor's time has its offset")
        # A time valid here but not in UTC (year 1 at +01:00, year 9999 at -01:00) would fail
        # where a driver converts it to UTC (the audit page's, psycopg), a 500.
        position[0].astimezone(dt.UTC)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        raise BadRequest("The cursor is not one this API returned", code="invalid_cursor") from exc
    return position


def newest_first(query: Select[Any], model: Any, *, limit: int, cursor: str | None) -> Select[Any]:
    """`query` ordered newest first, after the cursor's position, one row more than a page
    (the extra row says whether there is a next page)."""
    query = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    if cursor is not None:
        created_at, row_id = decode_cursor(cursor)
        query = query.where(tuple_(model.created_at, model.id) < tuple_(created_at, row_id))
    return query


def page(rows: Sequence[Row], limit: int) -> tuple[list[Row], str | None]:
    """The page's rows and the cursor of the next page (None on the last)."""
    items = list(rows[:limit])
    last = items[-1] if len(rows) > limit else None
    return items, (encode_cursor(last.created_at, last.id) if last is not None else None)
