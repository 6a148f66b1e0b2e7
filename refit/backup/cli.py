"""The commands: `refit backup [FILE]` and `refit restore FILE` (refit/cli.py's LAZY table)."""

from __future__ import annotations

from pathlib import Path

import typer

from refit.backup.dump import backup, default_backup_path
from refit.backup.restore import restore
from refit.backup.target import BackupError, configured_target
from refit.backup.tools import console
from refit.settings import get_settings


def _megabytes(size: int) -> str:
    return f"{size / 1_048_576:.2f} MB"


def backup_command(
    file: Path | None = typer.Argument(
        None, help="Where to write (default: REFIT_DATA_DIR/backups/refit-<UTC time>.dump)"
    ),
) -> None:
    """Back up the database (REFIT_DATABASE_URL, or the embedded one) with pg_dump: one
    consistent snapshot, safe while the service runs."""
    path = file or default_backup_path(get_settings().data_dir)
    try:
        with configured_target() as target:
            console.print(f"backing up {target.shown}")
            summary = backup(target, path)
    except BackupError as exc:
        console.print(f"[red]backup failed:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(
        f"[green]backup written[/green]: {summary.path} — {_megabytes(summary.size_bytes)}, "
        f"{summary.tables} tables, {summary.seconds:.1f} s ({summary.tool})",
        highlight=False,
        soft_wrap=True,
    )


def restore_command(
    file: Path = typer.Argument(..., help="A backup written by `refit backup`"),
) -> None:
    """Restore a backup into an EMPTY database (REFIT_DATABASE_URL, or the embedded one),
    then migrate it to this code's newest revision if the backup is older."""
    try:
        with configured_target() as target:
            console.print(f"restoring {file} into {target.shown}")
            summary = restore(target, file)
    except BackupError as exc:
        console.print(f"[red]restore failed:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    migrated = f", migrated from {summary.migrated_from}" if summary.migrated_from else ""
    console.print(
        f"[green]restored[/green]: {summary.tables} tables at migration {summary.revision}"
        f"{migrated}, {summary.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    if summary.doing_jobs or summary.open_payouts:
        # Their worker is gone; `refit worker` puts its jobs back and re-drives the payouts
        # from their stored transactions (docs/backups.md, "After a restore").
        console.print(
            f"{summary.doing_jobs} job(s) were running and {summary.open_payouts} payout(s) "
            "are open: start the worker, then run `refit payouts reconcile`",
            highlight=False,
            soft_wrap=True,
        )
