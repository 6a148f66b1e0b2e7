"""Shared by the flag tests: random wallet addresses, the flags as the database has them."""

from __future__ import annotations

import os
from typing import Any

import base58
import httpx
from sqlalchemy import select

from refit.models.flag import Flag, FlagAudit
from refit.resources import Resources


def random_wallet() -> str:
    """A Solana address: 32 random bytes in base58, as a real public key looks."""
    return base58.b58encode(os.urandom(32)).decode()


async def put_flag(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, **body: Any
) -> dict[str, Any]:
    response = await client.put(f"/api/admin/flags/{name}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def flag_rows(resources: Resources) -> list[tuple[str, str, int, list[str]]]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(Flag.name, Flag.mode, Flag.percent, Flag.wallets).order_by(Flag.name)
        )
        return [(name, str(mode), percent, list(wallets)) for name, mode, percent, wallets in rows]


async def audit_rows(resources: Resources, name: str) -> list[FlagAudit]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(FlagAudit)
            .join(Flag, Flag.id == FlagAudit.flag_id)
            .where(Flag.name == name)
            .order_by(FlagAudit.created_at)
        )
        return list(rows)
