"""`refit sanctions load FILE` and `refit sanctions status`: OFAC's SDN list on the service's
database, which every payout's recipient is screened against before signing."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import sys
from pathlib import Path

import typer

from refit import embedded
from refit.sanctions import sdn_file, service
from refit.transactions import command_transaction

app = typer.Typer(help="Sanctions screening (OFAC's SDN list).", no_args_is_help=True)

# Made for tests, never a real list: loading it is allowed (the tests do), and said.
EMPTY_TEST_LIST = Path(__file__).with_name("empty_sdn.xml")


def _read_with_progress(file: Path) -> sdn_file.SdnList:
    """The list in `file`, with a progress bar on a terminal (OFAC's file is tens of MB)."""
    if not sys.stderr.isatty():
        return sdn_file.read(file)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(f"reading {file.name}", total=file.stat().st_size)
        return sdn_file.read(file, lambda n: progress.advance(task, n))


def _age_text(listing: service.LoadedList, now: dt.datetime) -> str:
    age = service.list_age(listing, now)
    assert age is not None
    return f"{age.days} day{'s' if age.days != 1 else ''} old"


def _is_the_test_list(listing: service.LoadedList) -> bool:
    return listing.source_sha256 == hashlib.sha256(EMPTY_TEST_LIST.read_bytes()).hexdigest()


@app.command("load")
def load_command(
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        readable=True,
        help="OFAC's SDN list as XML (SDN.XML, from the Sanctions List Service)",
    ),
    allow_older: bool = typer.Option(
        False, "--allow-older", help="Load it even if it is older than the list loaded"
    ),
) -> None:
    """Replace the sanctions list with the Solana addresses OFAC's SDN file lists.

    Every `Digital Currency Address - *` ID that is a valid Solana address is kept, whatever
    its symbol, with the list's publish date. The old list is replaced in one transaction:
    payouts screened meanwhile see the old list or the new one, never none. Exit status 1
    when the file is refused (not OFAC's XML, dated in the future, older than the list
    loaded)."""
    try:
        sdn = _read_with_progress(file)
    except sdn_file.SdnFileError as exc:
        typer.echo(f"refit: {file}: {exc}", err=True)
        raise typer.Exit(1) from exc
    settings, servers = embedded.settings_with_servers(with_redis=False)
    try:
        assert settings.database_url
        loaded = asyncio.run(
            command_transaction(
                settings.database_url,
                lambda session: service.replace_list(session, sdn, allow_older=allow_older),
            )
        )
    except service.ListRefused as exc:
        typer.echo(f"refit: {file}: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        servers.stop()
    if sdn.entries != sdn.record_count:
        typer.echo(
            f"warning: the file states {sdn.record_count} records and holds {sdn.entries} "
            "entries: check the download",
            err=True,
        )
    typer.echo(
        f"sanctions list loaded: published {loaded.published_on}, {loaded.record_count} "
        f"records, {loaded.address_count} Solana addresses kept ({sdn.other_currency_ids} "
        "other digital-currency addresses skipped)"
    )
    if _is_the_test_list(loaded):
        typer.echo("note: this is the empty list made for tests, not OFAC's", err=True)


@app.command("status")
def status_command() -> None:
    """The list loaded: its publish date, age, counts, and whether it is stale.

    Exit status 0 when it is fresh, 1 when it is older than REFIT_SANCTIONS_MAX_AGE_DAYS or
    none was ever loaded (in production, new payouts are then held)."""
    settings, servers = embedded.settings_with_servers(with_redis=False)
    try:
        assert settings.database_url
        listing = asyncio.run(command_transaction(settings.database_url, service.current_list))
    finally:
        servers.stop()
    if listing is None:
        typer.echo("no sanctions list loaded: `refit sanctions load FILE` (OFAC's SDN.XML)")
        raise typer.Exit(1)
    now = dt.datetime.now(dt.UTC)
    stale = service.is_stale(settings, listing, now)
    typer.echo(
        f"published {listing.published_on} ({_age_text(listing, now)}), loaded "
        f"{listing.loaded_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC: {listing.record_count} "
        f"records, {listing.address_count} Solana addresses, sha256 {listing.source_sha256}"
    )
    if _is_the_test_list(listing):
        typer.echo("this is the empty list made for tests, not OFAC's")
    max_days = settings.sanctions_max_age_days
    typer.echo(f"stale: older than {max_days} days" if stale else f"fresh (max {max_days} days)")
    raise typer.Exit(1 if stale else 0)
