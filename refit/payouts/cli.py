"""`refit payouts ...`: the operators' view of payouts against the chain, and the ways out of
a stopped payout (retry, cancel, resolve, release) for an operator at a terminal."""

from __future__ import annotations

import asyncio
import uuid

import typer
from rich.console import Console
from rich.table import Table
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Finalized
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import cli_failures, db, embedded, queue
from refit.admin import audit
from refit.admin.cli import cli_actor
from refit.admin.deps import OperatorPrincipal
from refit.admin.operators import normalize_username
from refit.errors import ProblemError
from refit.models import AuditOutcome, Operator, OperatorRole
from refit.models.payout import Payout
from refit.payouts import chain, recovery
from refit.payouts.reconcile import Difference, reconcile
from refit.pricing.sources import Rate
from refit.resources import close_resources, open_resources
from refit.settings import Settings
from refit.transactions import service_transaction

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


# The ways out of a stopped payout: the same service functions as the API
# (refit/payouts/recovery.py), the admin named by --operator acting, four-eyes as on the API.
DONE = {"retry": "retried", "cancel": "cancelled", "resolve": "resolved", "release": "released"}


class OperatorRefused(ProblemError):
    status, code = 403, "operator_forbidden"


async def acting_admin(session: AsyncSession, username: str) -> OperatorPrincipal:
    """The operator named `username` as the API sees them signed in (refit/admin/deps.py):
    refused unless an enabled admin whom a second admin approved."""
    row = (
        await session.execute(
            select(
                Operator.id,
                Operator.username,
                Operator.role,
                Operator.disabled_at,
                Operator.approved_at,
            ).where(Operator.username == normalize_username(username))
        )
    ).one_or_none()
    if row is None or row.disabled_at is not None:
        raise OperatorRefused(f"no enabled operator named {username!r}")
    if row.approved_at is None:
        raise OperatorRefused(f"{row.username} is waiting for a second admin's approval")
    if row.role != OperatorRole.ADMIN:
        raise OperatorRefused(f"{row.username} is not an admin")
    return OperatorPrincipal(id=row.id, username=row.username, role=row.role)


async def move(
    settings: Settings,
    verb: str,
    payout_id: uuid.UUID,
    username: str,
    *,
    signature: str | None = None,
) -> Payout:
    """`verb` (a key of DONE) on the payout as the admin `username`, in one transaction with
    its audit row: done from the CLI (`cli:<login>`) on the admin's behalf. The process's
    resources and queue are open meanwhile: four-eyes records a refusal in a transaction of
    its own, and a retry or release defers the send job."""
    assert settings.database_url
    res = await open_resources(settings)
    try:
        pool = await queue.open_queue(
            settings.database_url, max_size=1, timeouts=db.Timeouts.from_settings(settings)
        )
        try:
            read = None
            if verb == "resolve":
                assert signature is not None
                read = await recovery.read_for_resolve(res, signature)
            async with service_transaction() as session:
                operator = await acting_admin(session, username)
                payout = await _call(verb, session, payout_id, operator, settings, signature, read)
                await audit.record(
                    session,
                    cli_actor(),
                    f"payout.{verb}",
                    f"payout:{payout_id}",
                    AuditOutcome.DONE,
                    {"on_behalf_of": operator.actor, "operator": operator.username},
                )
            return payout
        finally:
            await queue.close_queue(pool)
    finally:
        await close_resources(res)


async def _call(
    verb: str,
    session: AsyncSession,
    payout_id: uuid.UUID,
    operator: OperatorPrincipal,
    settings: Settings,
    signature: str | None,
    read: tuple[chain.FoundTransfer | None, Rate] | None,
) -> Payout:
    max_usd = settings.payout_max_usd
    if verb == "retry":
        return await recovery.retry(session, payout_id, operator, max_usd=max_usd)
    if verb == "cancel":
        return await recovery.cancel(session, payout_id, operator, max_usd=max_usd)
    if verb == "release":
        return await recovery.release(session, payout_id, operator, max_usd=max_usd)
    assert verb == "resolve" and signature is not None and read is not None
    found, rate = read
    return await recovery.resolve(
        session, payout_id, operator, found, signature=signature, rate=rate
    )


PAYOUT_ID = typer.Argument(..., metavar="PAYOUT_ID", help="The payout's id")
OPERATOR = typer.Option(
    ...,
    "--operator",
    metavar="USERNAME",
    help="The admin acting: enabled and approved; four-eyes applies to them",
)


def _way_out(verb: str, payout_id: uuid.UUID, operator: str, signature: str | None = None) -> None:
    settings, servers = embedded.settings_with_servers()
    try:
        payout = asyncio.run(move(settings, verb, payout_id, operator, signature=signature))
    except ProblemError as exc:
        # Refused (not allowed now, four-eyes, no such payout or operator, a transfer that is
        # not this payout's): nothing changed; one line, as the API's problem would say it.
        typer.echo(f"refit: payout {payout_id} not {verb}: {exc.detail} ({exc.code})", err=True)
        raise typer.Exit(cli_failures.EXIT_NO) from None
    finally:
        servers.stop()
    typer.echo(f"payout {payout.id} {DONE[verb]} by {operator}: {payout.status}")


@app.command("retry")
def retry_command(payout_id: uuid.UUID = PAYOUT_ID, operator: str = OPERATOR) -> None:
    """Retry a failed payout: back to pending, its job signs a new transfer once the chain
    shows the failed one moved nothing. Above the per-payout cap, only a second admin."""
    _way_out("retry", payout_id, operator)


@app.command("cancel")
def cancel_command(payout_id: uuid.UUID = PAYOUT_ID, operator: str = OPERATOR) -> None:
    """Cancel a failed or held payout: the order waits where an admin decides again (pay
    again, or send the device home). Above the per-payout cap, only a second admin."""
    _way_out("cancel", payout_id, operator)


@app.command("resolve")
def resolve_command(
    payout_id: uuid.UUID = PAYOUT_ID,
    signature: str = typer.Argument(..., metavar="SIGNATURE", help="The transfer found on chain"),
    operator: str = OPERATOR,
) -> None:
    """Resolve an "already on chain" hold: the transfer SIGNATURE names is recorded as the
    payout (finalized) and the order completes; refused unless it is a finalized transfer
    from the treasury to the payout's recipient of its amount."""
    _way_out("resolve", payout_id, operator, signature)


@app.command("release")
def release_command(payout_id: uuid.UUID = PAYOUT_ID, operator: str = OPERATOR) -> None:
    """Release a payout held by sanctions screening: back to pending, its job screens again
    and signs. A sanctions hit always needs a second admin."""
    _way_out("release", payout_id, operator)
