"""The restore: into an empty database only, then migrated to the code's newest revision."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from alembic.script import ScriptDirectory
from rich.console import Console

from refit import db, migrate
from refit.backup.archive import read_archive
from refit.backup.target import BackupError, Target
from refit.backup.tools import find_tool, run_with_spinner, server_major


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
    run_with_spinner(args, target.env, "pg_restore", show)
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
