"""`refit import-localstorage FILE...`: the operator's import of browser exports.

Every file is checked first and every problem printed with its file and place; a file with
any problem is refused whole, the others are imported in batches of one transaction each.
Exit status, for scripts:
  0  every file imported (records already imported count as done)
  1  some file was refused (the others were imported; nothing of a refused file was)
  2  bad usage (typer's own), e.g. a file that does not exist
  3  the database failed part-way: the batches before it are in; run again to finish
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import structlog
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from refit import db, embedded
from refit.localstorage.importer import ImportSummary, batches, import_batch
from refit.localstorage.validation import CheckedExport, check_export
from refit.settings import Settings
from refit.transactions import service_transaction

EXIT_REFUSED = 1
EXIT_FAILED = 3
DEFAULT_BATCH_SIZE = 1000

log = structlog.get_logger(__name__)


@dataclass
class Outcome:
    summary: ImportSummary
    failed: str | None = None  # the database error that stopped the run


def import_localstorage(
    files: list[Path] = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        readable=True,
        metavar="FILE...",
        help="Export files, one per browser",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the files; write nothing"),
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE, "--batch-size", min=1, max=5000, help="Records per transaction"
    ),
) -> None:
    """Import the browser app's exports.

    Sellers, their addresses and orders, as docs/localstorage-export.md describes them. Safe
    to run again: what was imported is skipped."""
    console = Console(stderr=True)
    checked = check_files(files, console)
    summary = ImportSummary(refused=sum(1 for c in checked if c.refused))
    for export in checked:
        for problem in export.problems:
            console.print(f"{export.source}: {problem}", markup=False, highlight=False)
    if dry_run:
        accepted = [c.document for c in checked if c.document is not None]
        console.print(
            f"dry run: {len(accepted)} files valid, {summary.refused} refused; "
            f"{sum(len(d.addresses) for d in accepted)} addresses and "
            f"{sum(len(d.orders) for d in accepted)} orders would be imported",
            highlight=False,
        )
        raise typer.Exit(EXIT_REFUSED if summary.refused else 0)

    settings, servers = embedded.settings_with_servers()
    try:
        outcome = asyncio.run(run_import(settings, checked, batch_size=batch_size, console=console))
    finally:
        servers.stop()
    outcome.summary.refused = summary.refused
    console.print(summary_table(outcome.summary))
    if outcome.failed:
        console.print(f"import stopped: {outcome.failed}; run again to finish", markup=False)
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_REFUSED if summary.refused else 0)


def check_files(files: list[Path], console: Console | None = None) -> list[CheckedExport]:
    with _progress(console) as progress:
        task = progress.add_task("checking", total=len(files))
        checked = []
        for path in files:
            checked.append(check_export(path.read_bytes(), source=path.name))
            progress.advance(task)
    return checked


async def run_import(
    settings: Settings,
    checked: list[CheckedExport],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    console: Console | None = None,
) -> Outcome:
    """Import the accepted documents of `checked`, one transaction per batch."""
    assert settings.database_url
    engine = db.create_engine(settings.database_url, pool_size=1, max_overflow=0)
    sessionmaker = db.create_sessionmaker(engine)
    summary = ImportSummary()
    total = sum(len(c.document.addresses) + len(c.document.orders) for c in checked if c.document)
    try:
        with _progress(console) as progress:
            task = progress.add_task("importing", total=total)
            for batch in batches(checked, batch_size):
                async with service_transaction(sessionmaker=sessionmaker) as session:
                    done = await import_batch(session, batch)
                summary.add(done)
                progress.advance(task, sum(part.size for part in batch))
        return Outcome(summary)
    except SQLAlchemyError as exc:
        log.error("localstorage.import_failed", error=str(exc))
        return Outcome(summary, failed=type(exc).__name__ + ": " + str(exc).splitlines()[0])
    finally:
        await engine.dispose()


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )


def summary_table(summary: ImportSummary) -> Table:
    table = Table(title="import-localstorage")
    table.add_column("")
    table.add_column("created", justify="right")
    table.add_column("skipped (already imported)", justify="right")
    table.add_row("users", str(summary.users_created), "")
    table.add_row("addresses", str(summary.addresses_created), str(summary.addresses_skipped))
    table.add_row("orders", str(summary.orders_created), str(summary.orders_skipped))
    table.add_row("addresses left out (over the cap)", str(len(summary.addresses_left_out)), "")
    table.add_row("tracking numbers dropped", str(summary.tracking_numbers_dropped), "")
    table.add_row("payout signatures dropped", str(summary.payment_signatures_dropped), "")
    table.add_row("files refused", str(summary.refused), "")
    table.add_row("batches", str(summary.batches), "")
    return table
