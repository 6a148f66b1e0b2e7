"""Exports to import, and what an import left in the database, read as the service."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from refit.resources import Resources

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "localstorage-export.json"


def example(**overrides: Any) -> dict[str, Any]:
    doc = json.loads(EXAMPLE.read_text())
    return {**copy.deepcopy(doc), **overrides}


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


# Everything an import writes, in a stable order, with every column.
_SNAPSHOT = {
    "users": "SELECT * FROM users ORDER BY wallet_address",
    "addresses": "SELECT * FROM shipping_addresses ORDER BY id",
    "orders": "SELECT * FROM orders ORDER BY id",
    "history": "SELECT * FROM order_status_history ORDER BY id",
    "claims": "SELECT * FROM localstorage_imports ORDER BY user_id, kind, browser_id",
}


async def snapshot(resources: Resources) -> dict[str, list[dict[str, Any]]]:
    async with resources.engine.connect() as conn:
        return {
            name: [dict(row) for row in (await conn.execute(text(sql))).mappings()]
            for name, sql in _SNAPSHOT.items()
        }


async def count(resources: Resources, sql: str, **params: Any) -> int:
    async with resources.engine.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())
