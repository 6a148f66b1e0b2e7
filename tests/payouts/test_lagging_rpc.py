"""Behind a load-balanced RPC whose status and lookup node lags, a payout whose transfer
landed is never signed again; a transfer seen with an error is `failed` only once that is
finalized. The ledger's clock is stopped: the test moves time (`chain.advance`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Finalized
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from refit.payouts import tasks
from refit.resources import Resources
from refit.settings import Settings
from tests.inspection.helpers import operator
from tests.ledger.conftest import running_ledger, transfer_tx
from tests.payouts.conftest import (
    Setup,
    as_quoted_order,
    balance,
    pay,
    payout_row,
    retry_now,
    transfers_for,
)
from tests.payouts.lagging_rpc import LaggingRpc, serving

LAMPORTS = 2_946_600_000  # $442 at $150
TREASURY_LAMPORTS = 10 * 10**9
STOPPED = 3_600_000  # a slot an hour: the clock moves only when the test says


@dataclass
class Lagging:
    setup: Setup
    node: LaggingRpc
    rpc: AsyncClient  # through the load balancer, as the worker asks


@pytest.fixture
async def lagging(
    tmp_path: Path, settings: Settings, resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Lagging]:
    # One look per run: the test, not the job's polling, decides when time passes.
    monkeypatch.setattr(tasks, "FINALITY_WAIT_SECONDS", 0.0)
    async with running_ledger(tmp_path / "ledger", slot_ms=STOPPED) as ledger:
        await ledger.chain.advance(40)
        treasury = Keypair()
        await ledger.chain.airdrop(treasury.pubkey(), TREASURY_LAMPORTS)
        node = LaggingRpc(ledger.chain)
        async with serving(node) as url, AsyncClient(url, commitment=Confirmed) as rpc:
            settings.solana_rpc_url = url
            settings.treasury_keypair = SecretStr(json.dumps(list(bytes(treasury))))
            settings.treasury_pubkey = str(treasury.pubkey())
            setup = Setup(
                ledger,
                treasury,
                await operator(resources, "admin"),
                await operator(resources, "inspector"),
            )
            yield Lagging(setup, node, rpc)


async def test_a_lagging_node_never_gets_a_landed_transfer_signed_again(
    client, resources, make_user, run_jobs, lagging
):
    setup, chain = lagging.setup, lagging.setup.ledger.chain
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, setup)
    assert (await pay(client, order_id, setup.admin)).status_code == 202
    await run_jobs()
    first = await payout_row(resources, order_id)
    assert first.status == "sent" and first.last_valid_block_height is not None
    reference = Pubkey.from_string(first.reference)
    await chain.advance(1)  # confirmed
    assert await transfers_for(setup.ledger, first.reference) == [first.signature]

    # The transfer landed; the node that answers statuses and lookups falls 1,000 slots
    # behind while the chain moves past the transaction's last valid height (and finality).
    lagging.node.behind = 1000
    await chain.advance(300)
    status = await lagging.rpc.get_signature_statuses(
        [Signature.from_string(first.signature)], search_transaction_history=True
    )
    assert status.value == [None]
    denied = await lagging.rpc.get_signatures_for_address(reference, commitment=Finalized)
    assert denied.value == []
    height = (await lagging.rpc.get_block_height(Finalized)).value
    assert height > first.last_valid_block_height

    for _ in range(2):  # the re-sign path, twice: nothing is signed on the node's word
        await retry_now(resources, order_id)
        await run_jobs()
        waiting = await payout_row(resources, order_id)
        assert waiting.status == "sent"
        assert waiting.signature == first.signature and waiting.attempts == 1
        assert waiting.signed_tx == first.signed_tx
    assert await transfers_for(setup.ledger, first.reference) == [first.signature]
    assert await balance(setup.ledger, wallet.pubkey()) == LAMPORTS

    # The node catches up: finalized shows the transfer, and the payout completes with it.
    lagging.node.behind = 0
    await retry_now(resources, order_id)
    await run_jobs()
    paid = await payout_row(resources, order_id)
    assert paid.status == "finalized"
    assert paid.signature == first.signature and paid.attempts == 1
    assert await transfers_for(setup.ledger, first.reference) == [first.signature]
    assert await balance(setup.ledger, wallet.pubkey()) == LAMPORTS


async def test_an_error_seen_at_confirmed_is_failed_only_once_finalized(
    client, resources, make_user, run_jobs, lagging
):
    setup, chain = lagging.setup, lagging.setup.ledger.chain
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, setup)

    async def spend_the_treasury() -> None:
        # Between the worker's balance check and its transfer landing, the treasury is
        # spent down to its fee (another process with the key): the transfer lands with an
        # error. The node's preflight ran on the state before.
        leave = 1_000_000
        held = chain.svm.get_balance(setup.treasury.pubkey()) or 0
        blockhash, _ = chain.latest_blockhash("processed")
        spend = transfer_tx(setup.treasury, Keypair().pubkey(), held - leave - 5000, blockhash)
        await chain.send(spend, skip_preflight=False)

    lagging.node.skip_preflight = True
    lagging.node.before_send = spend_the_treasury
    assert (await pay(client, order_id, setup.admin)).status_code == 202
    await run_jobs()
    sent = await payout_row(resources, order_id)
    status = await lagging.rpc.get_signature_statuses([Signature.from_string(sent.signature)])
    assert status.value[0] is not None and status.value[0].err is not None
    assert sent.status == "sent" and sent.error is None  # processed, with an error: not final

    await chain.advance(1)
    await retry_now(resources, order_id)
    await run_jobs()
    confirmed = await payout_row(resources, order_id)
    status = await lagging.rpc.get_signature_statuses([Signature.from_string(sent.signature)])
    assert str(status.value[0].confirmation_status) == "TransactionConfirmationStatus.Confirmed"
    assert confirmed.status == "sent" and confirmed.error is None

    await chain.advance(40)
    await retry_now(resources, order_id)
    await run_jobs()
    failed = await payout_row(resources, order_id)
    assert failed.status == "failed"
    assert failed.signature == sent.signature and failed.attempts == 1
    assert await balance(setup.ledger, wallet.pubkey()) == 0
