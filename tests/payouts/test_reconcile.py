"""`refit payouts reconcile`: a difference planted in the table after a real payout on the
local ledger is reported (and the command exits 1), as is a transfer planted on chain for an
order with no payout row; a clean state reports nothing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey
from sqlalchemy import update
from typer.testing import CliRunner

from refit.cli import cli
from refit.models.payout import Payout, PayoutStatus
from refit.payouts.chain import order_reference
from refit.payouts.reconcile import Kind, reconcile
from refit.settings import get_settings
from tests.ledger.conftest import transfer_tx, wait_for_status
from tests.payouts.conftest import as_quoted_order, pay, payout_row


async def _paid(client, resources, make_user, run_jobs, paying) -> tuple[str, Payout]:
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()
    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    return order_id, payout


async def _plant(resources, order_id: str, **values) -> None:
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Payout).where(Payout.order_id == uuid.UUID(order_id)).values(**values)
        )


async def _kinds(resources, paying) -> list[tuple[str, Kind]]:
    found = await reconcile(resources.sessionmaker, paying.ledger.rpc)
    return [(str(d.order_id), d.kind) for d in found]


async def test_a_clean_state_reports_nothing(client, resources, make_user, run_jobs, paying):
    await _paid(client, resources, make_user, run_jobs, paying)
    assert await reconcile(resources.sessionmaker, paying.ledger.rpc) == []


async def test_differences_planted_in_the_table_are_reported(
    client, resources, make_user, run_jobs, paying
):
    order_id, payout = await _paid(client, resources, make_user, run_jobs, paying)
    assert payout.lamports is not None

    await _plant(resources, order_id, lamports=payout.lamports + 1)
    assert await _kinds(resources, paying) == [(order_id, Kind.AMOUNT_DIFFERS)]

    await _plant(resources, order_id, lamports=payout.lamports, recipient=str(Pubkey.new_unique()))
    assert await _kinds(resources, paying) == [(order_id, Kind.RECIPIENT_DIFFERS)]

    # A signature the chain does not have: the real transfer is then one the table lacks.
    other = "1" * 64
    await _plant(resources, order_id, recipient=payout.recipient, signature=other)
    assert await _kinds(resources, paying) == [
        (order_id, Kind.MISSING_ON_CHAIN),
        (order_id, Kind.UNRECORDED_TRANSFER),
    ]

    # Finalized on chain, not in the table.
    await _plant(resources, order_id, signature=payout.signature, status=PayoutStatus.SENT)
    found = await reconcile(resources.sessionmaker, paying.ledger.rpc)
    assert [(d.kind, d.signature) for d in found] == [(Kind.LANDED_NOT_RECORDED, payout.signature)]

    await _plant(resources, order_id, status=PayoutStatus.FINALIZED)
    assert await _kinds(resources, paying) == []


async def test_a_second_transfer_by_the_reference_is_reported(
    client, resources, make_user, run_jobs, paying
):
    order_id, payout = await _paid(client, resources, make_user, run_jobs, paying)
    rpc = paying.ledger.rpc
    blockhash = (await rpc.get_latest_blockhash(Confirmed)).value.blockhash
    second = transfer_tx(
        paying.treasury,
        Pubkey.from_string(payout.recipient),
        1000,
        blockhash,
        reference=Pubkey.from_string(payout.reference),
    )
    signature = (await rpc.send_transaction(second)).value
    await wait_for_status(rpc, signature)

    found = await reconcile(resources.sessionmaker, rpc)
    assert [(str(d.order_id), d.kind, d.signature) for d in found] == [
        (order_id, Kind.UNRECORDED_TRANSFER, str(signature))
    ]


@pytest.fixture
def cli_env(settings, paying, monkeypatch, tmp_path):
    """The command reads its settings from the environment, like in production."""
    assert settings.database_url and settings.redis_url
    monkeypatch.setenv("REFIT_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REFIT_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("REFIT_SOLANA_RPC_URL", paying.ledger.server.url)
    monkeypatch.setenv("REFIT_DATA_DIR", str(tmp_path / "cli"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_the_command_exits_1_on_a_difference_and_0_on_none(
    client, resources, make_user, run_jobs, paying, cli_env
):
    order_id, payout = await _paid(client, resources, make_user, run_jobs, paying)
    runner = CliRunner()

    # The command runs its own event loop: off this one, which serves the ledger.
    clean = await asyncio.to_thread(runner.invoke, cli, ["payouts", "reconcile"])
    assert clean.exit_code == 0, clean.output
    assert "no differences" in clean.output

    assert payout.lamports is not None
    await _plant(resources, order_id, lamports=payout.lamports - 5)
    differs = await asyncio.to_thread(runner.invoke, cli, ["payouts", "reconcile"])
    assert differs.exit_code == 1, differs.output
    assert order_id in differs.output and "amount_differs" in differs.output


async def test_a_transfer_for_an_order_with_no_payout_row_is_paid_but_unrecorded(
    client, resources, make_user, paying, cli_env
):
    """From the chain's side: an order inspected, never paid here (no payout row: a restore
    from an older backup loses it), and a transfer carrying its derived reference key on
    chain. Reconcile finds it by the order's key alone, and the command exits 1."""
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    assert await reconcile(resources.sessionmaker, paying.ledger.rpc) == []
    rpc = paying.ledger.rpc
    blockhash = (await rpc.get_latest_blockhash(Confirmed)).value.blockhash
    planted = transfer_tx(
        paying.treasury,
        wallet.pubkey(),
        10**9,
        blockhash,
        reference=order_reference(uuid.UUID(order_id)),
    )
    signature = (await rpc.send_transaction(planted)).value
    await wait_for_status(rpc, signature)

    found = await reconcile(resources.sessionmaker, rpc)
    assert [(str(d.order_id), d.kind, d.signature) for d in found] == [
        (order_id, Kind.PAID_BUT_UNRECORDED, str(signature))
    ]
    reported = await asyncio.to_thread(CliRunner().invoke, cli, ["payouts", "reconcile"])
    assert reported.exit_code == 1, reported.output
    assert order_id in reported.output and "paid_but_unrecorded" in reported.output
