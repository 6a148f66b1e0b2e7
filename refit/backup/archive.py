"""What a backup file holds: its tables, the PostgreSQL it came from and the pg_dump that wrote
it, and its migration (alembic_version), read without restoring it."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from refit.backup.target import BackupError
from refit.backup.tools import tool_candidates, tool_major


@dataclass(frozen=True)
class Archive:
    tables: int
    source_major: int  # the server it was dumped from
    dumper_major: int  # the pg_dump that wrote it
    revision: str | None  # alembic_version in it


def read_archive(path: Path) -> Archive:
    """Read the archive's table of contents with the newest pg_restore at hand (it reads
    every older archive)."""
    if not path.is_file():
        raise BackupError(f"no such backup file: {path}")
    candidates = tool_candidates("pg_restore")
    if not candidates:
        raise BackupError("no pg_restore found: install the PostgreSQL client tools")
    newest = max(candidates, key=tool_major)
    listed = subprocess.run([str(newest), "--list", str(path)], capture_output=True, text=True)  # noqa: S603 (pg_dump/pg_restore we found, an argv list: no shell)
    if listed.returncode != 0:
        raise BackupError(f"{path} is not a pg_dump custom archive: {listed.stderr.strip()}")
    toc = listed.stdout
    data = subprocess.run(  # noqa: S603 (pg_dump/pg_restore we found, an argv list: no shell)
        [str(newest), "--data-only", "--table=alembic_version", "--file=-", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Archive(
        tables=len(re.findall(r"^\d+; \d+ \d+ TABLE DATA ", toc, flags=re.M)),
        source_major=_major_after("Dumped from database version:", toc),
        dumper_major=_major_after("Dumped by pg_dump version:", toc),
        revision=_revision_in_copy(data),
    )


def _major_after(label: str, toc: str) -> int:
    match = re.search(re.escape(label) + r"\s*(\d+)", toc)
    return int(match.group(1)) if match else 0


def _revision_in_copy(sql: str) -> str | None:
    lines = sql.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("COPY ") and "alembic_version" in line and i + 1 < len(lines):
            value = lines[i + 1].strip()
            return None if value == "\\." else value
    return None
