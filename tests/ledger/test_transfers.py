"""SOL transfers on the local ledger, through solana-py: exact balances, statuses that reach
finalized, a transaction that lands once, Solana's rent rule."""

from __future__ import annotations

import asyncio

import pytest
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.keypair import Keypair
from solders.transaction_status import TransactionConfirmationStatus

from tests.ledger.conftest import Running, funded, transfer_tx, wait_for_status

SOL = 1_000_000_000


async def _balance(ledger: Running, keypair: Keypair) -> int:
    return (await ledger.rpc.get_balance(keypair.pubkey())).value


async def test_a_transfer_moves_the_amount_and_the_fee_exactly(ledger: Running):
    rpc = ledger.rpc
    treasury, seller = await funded(rpc, 5 * SOL), Keypair()
    blockhash = (await rpc.get_latest_blockhash()).value
    # As REFERENCE §6: a compute-unit limit and price (a priority fee) before the transfer.
    prefix = [set_compute_unit_limit(1_000), set_compute_unit_price(2_000_000)]
    tx = transfer_tx(treasury, seller.pubkey(), 2 * SOL, blockhash.blockhash, prefix=prefix)

    signature = (await rpc.send_transaction(tx)).value

    status = await wait_for_status(rpc, signature)
    assert status.err is None
    assert status.confirmation_status == TransactionConfirmationStatus.Finalized
    found = (await rpc.get_transaction(signature, max_supported_transaction_version=0)).value
    assert found is not None and found.transaction.meta is not None
    fee = found.transaction.meta.fee
    assert fee == 5_000 + 2_000  # one signature; 1,000 CU at 2,000,000 micro-lamports
    assert await _balance(ledger, treasury) == 5 * SOL - 2 * SOL - fee
    assert await _balance(ledger, seller) == 2 * SOL
    assert found.transaction.meta.post_balances[1] == 2 * SOL


async def test_the_same_signed_bytes_sent_twice_transfer_once(ledger: Running):
    rpc = ledger.rpc
    treasury, seller = await funded(rpc), Keypair()
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    tx = transfer_tx(treasury, seller.pubkey(), SOL, blockhash)

    first = (await rpc.send_transaction(tx)).value
    with pytest.raises(RPCException, match="already been processed"):
        await rpc.send_transaction(tx)
    # Without preflight a validator answers with the signature, and nothing happens again.
    again = await rpc.send_raw_transaction(bytes(tx), TxOpts(skip_preflight=True))

    assert again.value == first
    await wait_for_status(rpc, first)
    assert await _balance(ledger, seller) == SOL
    history = await rpc.get_signatures_for_address(seller.pubkey())
    assert [entry.signature for entry in history.value] == [first]


async def test_rent_minimum_and_a_transfer_that_would_leave_too_little(ledger: Running):
    rpc = ledger.rpc
    rent = (await rpc.get_minimum_balance_for_rent_exemption(0)).value
    assert rent == 890_880
    treasury, seller = await funded(rpc), Keypair()
    before = await _balance(ledger, treasury)
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash

    with pytest.raises(RPCException, match="insufficient funds for rent") as refused:
        await rpc.send_transaction(transfer_tx(treasury, seller.pubkey(), rent - 1, blockhash))
    assert "InsufficientFundsForRent" in str(refused.value)
    assert await _balance(ledger, treasury) == before
    assert await _balance(ledger, seller) == 0

    await rpc.send_transaction(transfer_tx(treasury, seller.pubkey(), rent, blockhash))
    assert await _balance(ledger, seller) == rent


async def test_a_failing_transfer_is_refused_by_preflight_and_lands_failed_without(
    ledger: Running,
):
    rpc = ledger.rpc
    treasury, seller = await funded(rpc, SOL), Keypair()
    blockhash = (await rpc.get_latest_blockhash()).value.blockhash
    too_much = transfer_tx(treasury, seller.pubkey(), 2 * SOL, blockhash)

    with pytest.raises(RPCException, match="custom program error: 0x1") as refused:
        await rpc.send_transaction(too_much)
    assert "insufficient lamports" in str(refused.value)  # the program's logs come along
    assert await _balance(ledger, treasury) == SOL

    # Skipping preflight, it lands as a validator would land it: failed, its fee paid.
    signature = (await rpc.send_transaction(too_much, TxOpts(skip_preflight=True))).value
    status = await wait_for_status(rpc, signature)
    assert status.err is not None
    assert await _balance(ledger, treasury) == SOL - 5_000
    assert await _balance(ledger, seller) == 0


async def test_block_height_advances_with_time(ledger: Running):
    start = (await ledger.rpc.get_block_height()).value
    async with asyncio.timeout(10):
        while True:
            if (await ledger.rpc.get_block_height()).value >= start + 3:
                break
            await asyncio.sleep(0.02)
