"""Payouts against the local ledger: a funded treasury, a seller with a real wallet, an
order inspected as quoted, and the operators who pay it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import func, select, text

from refit import queue
from refit.models import Order
from refit.models.payout import Payout
from refit.resources import Resources
from refit.settings import Settings
from tests.inspection.helpers import Op, inspecting_order, operator, verdict
from tests.ledger.conftest import Running, funded, running_ledger

SLOT_MS = 30
TREASURY_LAMPORTS = 10 * 10**9


@dataclass
class Setup:
    ledger: Running
    treasury: Keypair
    admin: Op
    inspector: Op


@pytest.fixture
async def paying(tmp_path: Path, settings: Settings, resources: Resources) -> AsyncIterator[Setup]:
    async with running_ledger(tmp_path / "ledger", slot_ms=SLOT_MS) as ledger:
        treasury = await funded(ledger.rpc, TREASURY_LAMPORTS)
        assert ledger.server.url
        # The same Settings object the process's resources (and so the job) read.
        settings.solana_rpc_url = ledger.server.url
        settings.treasury_keypair = SecretStr(json.dumps(list(bytes(treasury))))
        settings.treasury_pubkey = str(treasury.pubkey())
        yield Setup(
            ledger,
            treasury,
            await operator(resources, "admin"),
            await operator(resources, "inspector"),
        )


async def as_quoted_order(
    client: httpx.AsyncClient, resources: Resources, make_user: Any, setup: Setup
) -> tuple[str, Keypair, Any]:
    """An order inspected as quoted ($442), its seller's wallet a fresh keypair's."""
    wallet = Keypair()
    seller = await make_user(wallet_address=str(wallet.pubkey()))
    order_id = await inspecting_order(client, resources, seller, setup.inspector)
    inspected = await client.post(
        f"/api/admin/orders/{order_id}/inspect",
        json=verdict(grade="flawless"),
        headers=setup.inspector.headers,
    )
    assert inspected.status_code == 200, inspected.text
    assert inspected.json()["outcome"] == "as_quoted"
    return order_id, wallet, seller


async def pay(client: httpx.AsyncClient, order_id: str, op: Op, **headers: str) -> httpx.Response:
    return await client.post(f"/api/admin/orders/{order_id}/pay", headers={**op.headers, **headers})


async def payout_row(resources: Resources, order_id: str) -> Payout:
    async with resources.sessionmaker() as session:
        payout = await session.scalar(select(Payout).where(Payout.order_id == uuid.UUID(order_id)))
        assert payout is not None
        return payout


async def order_row(resources: Resources, order_id: str) -> Order:
    async with resources.sessionmaker() as session:
        order = await session.get(Order, uuid.UUID(order_id))
        assert order is not None
        return order


async def count(resources: Resources, sql: str, **params: Any) -> int:
    async with resources.sessionmaker() as session:
        return int(await session.scalar(text(sql), params) or 0)


async def payouts_count(resources: Resources) -> int:
    async with resources.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Payout)) or 0)


async def retry_now(resources: Resources, order_id: str) -> None:
    """Make the payout job's scheduled retry due now (time passes in SQL, not in sleep)."""
    async with resources.sessionmaker() as session, session.begin():
        assert await queue.hurry(session, f"payout:{order_id}") is not None


async def balance(ledger: Running, key: Pubkey) -> int:
    return (await ledger.rpc.get_balance(key)).value


async def transfers_for(ledger: Running, reference: str) -> list[str]:
    """Every transaction on chain carrying the order's reference key."""
    found = await ledger.rpc.get_signatures_for_address(Pubkey.from_string(reference))
    return [str(s.signature) for s in found.value]
