"""The local ledger survives a restart on its directory: balances, statuses, history, the
clock, the duplicate check, the development treasury."""

from __future__ import annotations

from pathlib import Path

import pytest
from solana.rpc.commitment import Processed
from solana.rpc.core import RPCException
from solders.keypair import Keypair
from solders.transaction_status import TransactionConfirmationStatus

from refit.ledger.server import TREASURY_FLOOR_LAMPORTS
from refit.ledger.treasury import load_treasury
from tests.ledger.conftest import funded, running_ledger, transfer_tx, wait_for_status

SOL = 1_000_000_000


async def test_a_restart_keeps_balances_statuses_and_history(tmp_path: Path):
    seller, reference = Keypair(), Keypair().pubkey()
    async with running_ledger(tmp_path) as ledger:
        rpc = ledger.rpc
        treasury = await funded(rpc, 7 * SOL)
        blockhash = (await rpc.get_latest_blockhash()).value.blockhash
        tx = transfer_tx(treasury, seller.pubkey(), 2 * SOL, blockhash, reference=reference)
        signature = (await rpc.send_transaction(tx)).value
        await wait_for_status(rpc, signature, TransactionConfirmationStatus.Confirmed)
        treasury_balance = (await rpc.get_balance(treasury.pubkey())).value
        dev_treasury = load_treasury(ledger.settings).pubkey()
        dev_balance = (await rpc.get_balance(dev_treasury)).value
        height = (await rpc.get_block_height(Processed)).value
        genesis = (await rpc.get_genesis_hash()).value

    async with running_ledger(tmp_path) as ledger:
        rpc = ledger.rpc
        assert (await rpc.get_genesis_hash()).value == genesis
        assert (await rpc.get_block_height(Processed)).value >= height
        assert (await rpc.get_balance(treasury.pubkey())).value == treasury_balance
        assert (await rpc.get_balance(seller.pubkey())).value == 2 * SOL
        # The same generated treasury, funded once: a restart does not fund it again.
        assert load_treasury(ledger.settings).pubkey() == dev_treasury
        assert (await rpc.get_balance(dev_treasury)).value == dev_balance
        assert dev_balance >= TREASURY_FLOOR_LAMPORTS

        status = await wait_for_status(rpc, signature)
        assert status.err is None
        found = (await rpc.get_signatures_for_address(reference)).value
        assert [entry.signature for entry in found] == [signature]
        with pytest.raises(RPCException, match="already been processed"):
            await rpc.send_transaction(tx)
        assert (await rpc.get_balance(seller.pubkey())).value == 2 * SOL


async def test_a_line_cut_short_by_a_crash_is_dropped(tmp_path: Path):
    seller = Keypair()
    async with running_ledger(tmp_path) as ledger:
        treasury = await funded(ledger.rpc, 3 * SOL)
        blockhash = (await ledger.rpc.get_latest_blockhash()).value.blockhash
        await ledger.rpc.send_transaction(transfer_tx(treasury, seller.pubkey(), SOL, blockhash))
    journal = tmp_path / "ledger" / "transactions.jsonl"
    whole = journal.read_bytes()
    with open(journal, "ab") as f:
        f.write(b'{"signature":"half a lin')

    async with running_ledger(tmp_path) as ledger:
        assert (await ledger.rpc.get_balance(seller.pubkey())).value == SOL
    assert journal.read_bytes() == whole
