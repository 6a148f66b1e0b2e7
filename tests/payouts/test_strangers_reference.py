"""The order's reference key is derived from its id, which the seller knows: anyone can send
a transaction naming it. Such a transaction moves none of the treasury's SOL and must not
hold the payout "already on chain"; and however many there are, the lookup reads every page,
so they cannot push a real transfer of ours out of sight."""

from __future__ import annotations

import uuid

import pytest
from solders.keypair import Keypair

from refit.payouts import chain
from tests.ledger.conftest import funded, wait_for_status
from tests.payouts.conftest import as_quoted_order, balance, pay, payout_row, transfers_for

LAMPORTS = 2_946_600_000  # $442 at $150


async def _strangers_transfer(rpc, stranger: Keypair, reference) -> str:
    blockhash = await chain.latest_blockhash(rpc)
    signed = chain.sign_transfer(
        stranger, Keypair().pubkey(), 1_000_000_000, reference, blockhash.blockhash
    )
    assert await chain.send(rpc, bytes(signed))
    return str(signed.signatures[0])


async def test_transactions_naming_the_reference_not_signed_by_the_treasury_do_not_hold_it(
    client, resources, make_user, run_jobs, paying, monkeypatch: pytest.MonkeyPatch
):
    # Two signatures a page: three strangers' transactions and ours take three pages.
    monkeypatch.setattr(chain, "SIGNATURES_PAGE", 2)
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    reference = chain.order_reference(uuid.UUID(order_id))
    stranger = await funded(paying.ledger.rpc)
    theirs = [await _strangers_transfer(paying.ledger.rpc, stranger, reference) for _ in range(3)]
    for signature in theirs:
        await wait_for_status(paying.ledger.rpc, chain.Signature.from_string(signature))

    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized", (payout.status, payout.hold_reason, payout.error)
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    # Every page read, oldest first: the three strangers', then ours.
    await wait_for_status(paying.ledger.rpc, chain.Signature.from_string(payout.signature))
    listed = await chain.transfers_by_reference(
        paying.ledger.rpc, reference, commitment=chain.Finalized
    )
    assert listed == [*theirs, payout.signature]
    assert sorted(await transfers_for(paying.ledger, str(reference))) == sorted(listed)
