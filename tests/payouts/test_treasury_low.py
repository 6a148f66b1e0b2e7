"""A treasury too low to pay the transfer, its fee and keep its rent-exempt minimum: the
payout waits unsigned with a clear error and an alert, and is paid once funded."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

from pydantic import SecretStr
from solders.keypair import Keypair

from refit.payouts import chain
from tests.ledger.conftest import funded, wait_for_status
from tests.payouts.conftest import (
    as_quoted_order,
    balance,
    pay,
    payout_row,
    retry_now,
    transfers_for,
)

LAMPORTS = 2_946_600_000  # $442 at $150


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _treasury(settings, keypair: Keypair) -> None:
    settings.treasury_keypair = SecretStr(json.dumps(list(bytes(keypair))))
    settings.treasury_pubkey = str(keypair.pubkey())


async def test_an_unfunded_treasury_stops_the_payout_before_signing(
    client, resources, make_user, run_jobs, paying, settings, capfd
):
    empty = Keypair()  # never funded
    await _treasury(settings, empty)
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202

    alerts = _Records()
    job_log = logging.getLogger("refit.payouts.tasks")
    job_log.addHandler(alerts)
    try:
        await run_jobs()
    finally:
        job_log.removeHandler(alerts)

    payout = await payout_row(resources, order_id)
    assert payout.status == "pending" and payout.error == "treasury balance too low"
    assert payout.signed_tx is None and payout.signature is None
    assert await transfers_for(paying.ledger, payout.reference) == []
    # The alert: an error-level log line from the payout job. Through the stdlib handler once
    # logging is configured, printed to standard output by structlog's default before that.
    levels = [r.levelname for r in alerts.records if "payouts.treasury_too_low" in str(r.msg)]
    levels += [
        "ERROR" if "[error" in line else line
        for line in capfd.readouterr().out.splitlines()
        if "payouts.treasury_too_low" in line
    ]
    assert levels == ["ERROR"]

    # Funded to exactly the amount, the fee and the rent-exempt minimum: paid, once.
    rent = await chain.rent_exempt_minimum(paying.ledger.rpc)
    signature = (
        await paying.ledger.rpc.request_airdrop(
            empty.pubkey(), LAMPORTS + chain.TRANSFER_FEE_LAMPORTS + rent
        )
    ).value
    await wait_for_status(paying.ledger.rpc, signature)
    await retry_now(resources, order_id)
    await run_jobs()
    paid = await payout_row(resources, order_id)
    assert paid.status == "finalized" and paid.error is None
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    assert await balance(paying.ledger, empty.pubkey()) == rent


async def test_one_lamport_short_of_the_rent_exempt_minimum_waits(
    client, resources, make_user, run_jobs, paying, settings
):
    rent = await chain.rent_exempt_minimum(paying.ledger.rpc)
    short = await funded(paying.ledger.rpc, LAMPORTS + chain.TRANSFER_FEE_LAMPORTS + rent - 1)
    await _treasury(settings, short)
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202

    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert payout.status == "pending" and payout.error == "treasury balance too low"
    assert payout.signed_tx is None


async def test_a_new_wallet_is_paid_at_least_the_rent_exempt_minimum(
    client, resources, make_user, run_jobs, paying, settings
):
    """A transfer that would open a wallet below the rent-exempt minimum is refused by the
    chain; the payout is raised to the least 0.0001-SOL step above it and lands, once."""
    rent = await chain.rent_exempt_minimum(paying.ledger.rpc)
    # $442 at $1,000,000 per SOL: 0.0004 SOL, under the ~0.00089 SOL a new wallet needs.
    settings.sol_usd_fixed_rate = Decimal("1000000")
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    assert await balance(paying.ledger, wallet.pubkey()) == 0
    assert (await pay(client, order_id, paying.admin)).status_code == 202

    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized" and payout.error is None
    assert rent < 900_000 and payout.lamports == 900_000
    assert payout.amount_sol == Decimal("0.0009")
    assert await balance(paying.ledger, wallet.pubkey()) == 900_000
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]


async def test_an_open_wallet_is_paid_exactly_what_is_owed_however_small(
    client, resources, make_user, run_jobs, paying, settings
):
    settings.sol_usd_fixed_rate = Decimal("1000000")
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    opened = (await paying.ledger.rpc.request_airdrop(wallet.pubkey(), 10**9)).value
    await wait_for_status(paying.ledger.rpc, opened)
    assert (await pay(client, order_id, paying.admin)).status_code == 202

    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    assert payout.lamports == 400_000 and payout.amount_sol == Decimal("0.0004")
    assert await balance(paying.ledger, wallet.pubkey()) == 10**9 + 400_000
