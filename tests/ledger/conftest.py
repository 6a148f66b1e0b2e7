"""The local ledger in the test's event loop, on a free port, spoken to with solana-py's
AsyncClient: the same client code the payouts run against a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus

from refit.ledger.chain import Chain
from refit.ledger.server import LedgerServer
from refit.settings import Settings

# Fast enough that finality (32 slots) takes about a second, slow enough that the recent
# status cache (150 slots) outlives a test's few round trips on a loaded machine.
SLOT_MS = 30


@dataclass
class Running:
    server: LedgerServer
    chain: Chain
    rpc: AsyncClient
    settings: Settings


@asynccontextmanager
async def running_ledger(data_dir: Path, slot_ms: int = SLOT_MS) -> AsyncIterator[Running]:
    settings = Settings(_env_file=None, data_dir=data_dir, ledger_port=0, ledger_slot_ms=slot_ms)
    server = LedgerServer(settings)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            chain = await server.started()
        assert server.url
        async with AsyncClient(server.url, commitment=Confirmed) as rpc:
            yield Running(server, chain, rpc, settings)
    finally:
        server.stop()
        await task


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_ledger(tmp_path) as running:
        yield running


async def wait_for_status(
    rpc: AsyncClient,
    signature: Signature,
    wanted: TransactionConfirmationStatus = TransactionConfirmationStatus.Finalized,
    timeout: float = 20,
) -> TransactionStatus:
    """Poll getSignatureStatuses (with history) until `wanted` or beyond, or fail."""
    order = [
        TransactionConfirmationStatus.Processed,
        TransactionConfirmationStatus.Confirmed,
        TransactionConfirmationStatus.Finalized,
    ]
    async with asyncio.timeout(timeout):
        while True:
            resp = await rpc.get_signature_statuses([signature], search_transaction_history=True)
            status = resp.value[0]
            if status is not None and status.confirmation_status is not None:
                if order.index(status.confirmation_status) >= order.index(wanted):
                    return status
            await asyncio.sleep(0.02)


async def funded(rpc: AsyncClient, lamports: int = 10_000_000_000) -> Keypair:
    keypair = Keypair()
    signature = (await rpc.request_airdrop(keypair.pubkey(), lamports)).value
    await wait_for_status(rpc, signature, TransactionConfirmationStatus.Confirmed)
    return keypair


def transfer_tx(
    payer: Keypair,
    to: Pubkey,
    lamports: int,
    blockhash: Hash,
    *,
    reference: Pubkey | None = None,
    prefix: list[Instruction] | None = None,
) -> VersionedTransaction:
    """A SOL transfer as REFERENCE §6 builds it; `reference` rides along as a read-only,
    non-signer account key, findable later with getSignaturesForAddress."""
    instruction = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports)
    )
    if reference is not None:
        instruction.accounts = [*instruction.accounts, AccountMeta(reference, False, False)]
    message = MessageV0.try_compile(payer.pubkey(), [*(prefix or []), instruction], [], blockhash)
    return VersionedTransaction(message, [payer])
