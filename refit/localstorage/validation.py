"""Checking one export before anything is written: every problem, each with its place in the
file (`orders[3].quote.price_usd`), so the web app's team can fix their export in one pass.

The model's field rules (schemas.py) and the checks across records (duplicate ids, an order's
address that is not in the file, two default addresses) both run on every document, so a file
with several kinds of problems lists all of them. A document with any problem is refused whole.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from refit.localstorage.schemas import ExportDocument


@dataclass(frozen=True)
class Problem:
    place: str  # a path into the document; "" for the document itself
    message: str

    def __str__(self) -> str:
        return f"{self.place or '(document)'}: {self.message}"


@dataclass
class CheckedExport:
    source: str  # a file name, or "upload"
    document: ExportDocument | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return bool(self.problems)


def check_export(raw: bytes | str, source: str) -> CheckedExport:
    """The export parsed and checked; `document` is set only when there is no problem."""
    try:
        # Decimal, not float: a price is refused with more places than a quote has, and a
        # float would invent some (0.1 + 0.2).
        data = json.loads(raw, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        return CheckedExport(
            source, None, [Problem(f"line {exc.lineno} column {exc.colno}", exc.msg)]
        )
    except UnicodeDecodeError as exc:
        return CheckedExport(source, None, [Problem("", f"not UTF-8 text: {exc.reason}")])
    if not isinstance(data, dict):
        return CheckedExport(source, None, [Problem("", "the export must be a JSON object")])

    problems: list[Problem] = []
    document: ExportDocument | None = None
    try:
        document = ExportDocument.model_validate(data)
    except ValidationError as exc:
        problems += [
            Problem(_place(error["loc"]), error["msg"].removeprefix("Value error, "))
            for error in exc.errors()
        ]
    problems += _cross_checks(data)
    problems.sort(key=lambda p: _sort_key(p.place))
    return CheckedExport(source, None if problems else document, problems)


def _place(loc: tuple[int | str, ...]) -> str:
    place = ""
    for part in loc:
        place += f"[{part}]" if isinstance(part, int) else (f".{part}" if place else str(part))
    return place


def _sort_key(place: str) -> tuple[Any, ...]:
    # Numeric order of indexes: orders[2] before orders[10].
    return tuple(int(p) if p.isdigit() else p for p in place.replace("[", ".").split("."))


def _records(data: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    items = data.get(key)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _cross_checks(data: dict[str, Any]) -> list[Problem]:
    """What no single field knows: ids unique in the file, references that resolve. Run on
    the raw JSON, so they are reported even when some fields are broken."""
    problems: list[Problem] = []
    addresses = _records(data, "addresses")
    orders = _records(data, "orders")
    for key, records in (("addresses", addresses), ("orders", orders)):
        counts = Counter(r.get("id") for _, r in records if isinstance(r.get("id"), str))
        for i, record in records:
            if isinstance(record.get("id"), str) and counts[record["id"]] > 1:
                problems.append(
                    Problem(f"{key}[{i}].id", f"id {record['id']!r} appears more than once")
                )
    defaults = [i for i, a in addresses if a.get("is_default") is True]
    for i in defaults[1:]:
        problems.append(
            Problem(
                f"addresses[{i}].is_default", f"addresses[{defaults[0]}] is the default already"
            )
        )
    # Only strings: an id or reference of another type is its field's own problem (above).
    address_ids = {a["id"] for _, a in addresses if isinstance(a.get("id"), str)}
    for i, order in orders:
        ref = order.get("address_id")
        if isinstance(ref, str) and ref not in address_ids:
            problems.append(
                Problem(f"orders[{i}].address_id", f"no address with id {ref!r} in this file")
            )
    return problems
