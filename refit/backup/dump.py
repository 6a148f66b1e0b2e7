"""The backup: pg_dump's custom format, one consistent snapshot, written aside and renamed."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from refit.backup.archive import read_archive
from refit.backup.target import Target
from refit.backup.tools import find_tool, run_with_spinner, server_major


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    size_bytes: int
    tables: int
    seconds: float
    tool: Path


def default_backup_path(data_dir: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return data_dir / "backups" / f"refit-{stamp}.dump"


def backup(target: Target, path: Path, show: Console | None = None) -> BackupSummary:
    """Dump the database to `path` (pg_dump's custom format). pg_dump reads every table in
    one snapshot, so orders committed meanwhile are either wholly in it or wholly not."""
    started = time.monotonic()
    pg_dump = find_tool("pg_dump", server_major(target))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written aside and renamed at the end: a failed dump never leaves a file that looks whole.
    partial = path.with_name(path.name + ".partial")
    args = [
        str(pg_dump),
        "--format=custom",
        "--verbose",
        # A migration holding a table's lock fails the dump after this long rather than
        # queueing every request behind both.
        "--lock-wait-timeout=60s",
        f"--file={partial}",
        f"--dbname={target.tool_url}",
    ]
    # Sellers' addresses and emails are in it: readable by the owner only.
    old_umask = os.umask(0o077)
    try:
        run_with_spinner(args, target.env, "pg_dump", show)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.umask(old_umask)
    partial.replace(path)
    archive = read_archive(path)
    return BackupSummary(
        path=path,
        size_bytes=path.stat().st_size,
        tables=archive.tables,
        seconds=time.monotonic() - started,
        tool=pg_dump,
    )
