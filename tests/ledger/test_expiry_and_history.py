"""Time on the local ledger: blockhashes expire at their lastValidBlockHeight, the recent
status cache forgets, searchTransactionHistory and a reference key still find a payment."""

from __future__ import annotations

from pathlib import Path

import pytest
from solana.rpc.commitment import Processed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.keypair import Keypair
from solders.transaction_status import TransactionConfirmationStatus

from refit.ledger.chain import STATUS_CACHE_SLOTS
from tests.ledger.conftest import Running, funded, running_ledger, transfer_tx, wait_for_status

SOL = 1_000_000_000


async def test_a_blockhash_is_good_until_its_last_valid_block_height_and_never_after(
    tmp_path: Path,
):
    # A clock that does not tick by itself: the test moves it, block by block.
    async with running_ledger(tmp_path, slot_ms=3_600_000) as ledger:
        rpc, chain = ledger.rpc, ledger.chain
        treasury, seller = Keypair(), Keypair()
        await rpc.request_airdrop(treasury.pubkey(), 10 * SOL)
        issued = (await rpc.get_latest_blockhash(Processed)).value
        height = (await rpc.get_block_height(Processed)).value
        assert issued.last_valid_block_height == height + 150

        # Up to its last valid height, inclusive, it is accepted...
        await chain.advance(issued.last_valid_block_height - height)
        edge = transfer_tx(treasury, seller.pubkey(), SOL, issued.blockhash)
        await rpc.send_transaction(edge)
        # ... one block later it can never land.
        await chain.advance(1)
        late = transfer_tx(treasury, seller.pubkey(), 3 * SOL, issued.blockhash)
        before = (await rpc.get_balance(treasury.pubkey())).value

        with pytest.raises(RPCException, match="Blockhash not found"):
            await rpc.send_transaction(late)
        dropped = await rpc.send_transaction(late, TxOpts(skip_preflight=True))

        assert (await rpc.get_block_height(Processed)).value > issued.last_valid_block_height
        assert (await rpc.get_balance(treasury.pubkey())).value == before
        assert (await rpc.get_balance(seller.pubkey())).value == SOL
        statuses = await rpc.get_signature_statuses(
            [dropped.value], search_transaction_history=True
        )
        assert statuses.value == [None]


async def test_an_unknown_blockhash_is_refused(ledger: Running):
    rpc = ledger.rpc
    treasury = await funded(rpc)

    with pytest.raises(RPCException, match="Blockhash not found"):
        await rpc.send_transaction(transfer_tx(treasury, Keypair().pubkey(), SOL, Hash.default()))


async def test_old_signatures_need_search_transaction_history(ledger: Running):
    rpc, chain = ledger.rpc, ledger.chain
    treasury, seller = await funded(rpc), Keypair()
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    signature = (
        await rpc.send_transaction(transfer_tx(treasury, seller.pubkey(), SOL, blockhash))
    ).value
    recent = await rpc.get_signature_statuses([signature])
    assert recent.value[0] is not None

    await chain.advance(STATUS_CACHE_SLOTS + 1)

    assert (await rpc.get_signature_statuses([signature])).value == [None]
    found = await rpc.get_signature_statuses([signature], search_transaction_history=True)
    status = found.value[0]
    assert status is not None and status.err is None
    assert status.confirmation_status == TransactionConfirmationStatus.Finalized


async def test_a_reference_key_finds_the_payment(ledger: Running):
    rpc = ledger.rpc
    treasury, seller = await funded(rpc), Keypair()
    reference = Keypair().pubkey()  # one per order: "did we pay order X?"
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    tx = transfer_tx(treasury, seller.pubkey(), SOL, blockhash, reference=reference)
    signature = (await rpc.send_transaction(tx)).value
    await wait_for_status(rpc, signature)

    found = (await rpc.get_signatures_for_address(reference)).value

    assert [entry.signature for entry in found] == [signature]
    assert found[0].err is None
    paid = (await rpc.get_transaction(signature, max_supported_transaction_version=0)).value
    assert paid is not None
    keys = [str(key) for key in paid.transaction.transaction.message.account_keys]
    assert str(reference) in keys and str(seller.pubkey()) in keys
    assert (await rpc.get_signatures_for_address(Keypair().pubkey())).value == []
