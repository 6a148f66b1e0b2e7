"""`refit payouts ...`: the operators' view of payouts against the chain."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.table import Table
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Finalized

from refit import db, embedded
from refit.payouts.reconcile import Difference, reconcile
from refit.settings import Settings

app = typer.Typer(help="Payouts in SOL.", no_args_is_help=True)


async def find_differences(settings: Settings) -> list[Difference]:
    assert settings.database_url
    engine = db.create_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with AsyncClient(settings.solana_rpc_endpoint, commitment=Finalized) as rpc:
            # The chain answers before anything is compared: with no payouts to check, a
            # ledger that is down would otherwise pass for one that agrees.
            await rpc.get_slot()
            return await reconcile(db.create_sessionmaker(engine), rpc)
    finally:
        await engine.dispose()


def show(differences: list[Difference], console: Console) -> None:
    if not differences:
        console.print("payouts and chain agree: no differences")
        return
    table = Table(title=f"{len(differences)} difference(s) between payouts and the chain")
    for column in ("order", "difference", "signature", "detail"):
        table.add_column(column, overflow="fold")
    for d in differences:
        table.add_row(str(d.order_id), d.kind.value, d.signature or "-", d.detail)
    console.print(table)


@app.command("reconcile")
def reconcile_command() -> None:
    """Compare the payouts table with the chain and list every difference.

    From the chain's side too: every order past inspection with no payout row is looked up
    by its reference key; a transfer found is reported paid_but_unrecorded. Exit status 1
    when there are any differences, 0 when none, 3 when the database or the chain does not
    answer."""
    settings, servers = embedded.settings_with_servers()
    try:
        differences = asyncio.run(find_differences(settings))
    finally:
        servers.stop()
    show(differences, Console(width=200))
    raise typer.Exit(1 if differences else 0)
