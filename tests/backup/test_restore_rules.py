"""What `refit restore` refuses, what it migrates, and how the tools are found and called."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from refit import db, migrate
from refit.backup.restore import head_revision
from refit.backup.target import BackupError, Target
from refit.backup.tools import find_tool
from tests.backup.conftest import refit, refit_env


async def _revision(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(db.libpq_url(url)) as conn:
        row = await (await conn.execute("SELECT version_num FROM alembic_version")).fetchone()
        assert row is not None
        return str(row[0])


async def _order_count(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(db.libpq_url(url)) as conn:
        row = await (await conn.execute("SELECT count(*) FROM orders")).fetchone()
        assert row is not None
        return int(row[0])


async def test_a_database_with_our_tables_is_refused_and_left_alone(
    database_url, make_user, resources, tmp_path
):
    await make_user()
    dump = tmp_path / "one.dump"
    code, said = await refit("backup", str(dump), env=refit_env(database_url, tmp_path))
    assert code == 0, said

    code, said = await refit("restore", str(dump), env=refit_env(database_url, tmp_path))

    assert code == 1, said
    assert "refused" in said and "is not empty" in said and "public.alembic_version" in said, said
    assert await _revision(database_url) == head_revision()[0]


async def test_a_backup_from_older_code_is_migrated_forward(make_empty_database, tmp_path):
    older, target = await make_empty_database(), await make_empty_database()
    head, _ = head_revision()
    await asyncio.to_thread(migrate.upgrade, older, "0015")
    dump = tmp_path / "older.dump"
    assert (await refit("backup", str(dump), env=refit_env(older, tmp_path)))[0] == 0

    code, said = await refit("restore", str(dump), env=refit_env(target, tmp_path))

    assert code == 0, said
    assert "migrated from 0015" in said, said
    assert await _revision(target) == head
    assert await _order_count(target) == 0


async def test_not_a_backup_is_refused(empty_database, tmp_path):
    junk = tmp_path / "junk.dump"
    junk.write_bytes(b"not a dump")
    code, said = await refit("restore", str(junk), env=refit_env(empty_database, tmp_path))
    assert code == 1 and "not a pg_dump custom archive" in said, said


def test_a_tool_older_than_the_server_is_refused_by_name():
    with pytest.raises(BackupError, match=r"pg_dump 99 or newer is needed"):
        find_tool("pg_dump", 99)


def test_the_password_goes_to_the_environment_never_the_command_line():
    target = Target.from_url("postgresql://refit:s3cret@db.internal:5432/refit?sslmode=require")
    assert "s3cret" not in target.tool_url and "s3cret" not in target.shown
    assert target.env["PGPASSWORD"] == "s3cret"
    assert "sslmode=require" in target.tool_url


async def test_the_embedded_database_round_trips_with_its_own_tools(tmp_path):
    """REFIT_DATABASE_URL unset: the embedded PostgreSQL under REFIT_DATA_DIR, dumped with the
    tools its wheel ships (the machine's may be older than it)."""
    first, second = tmp_path / "first", tmp_path / "second"
    embedded_env = {k: v for k, v in refit_env("", first).items() if k != "REFIT_DATABASE_URL"}
    code, said = await refit("migrate", env=embedded_env)
    assert code == 0, said
    code, said = await refit("backup", env=embedded_env)
    assert code == 0 and "backup written" in said, said
    (dump,) = (first / "backups").glob("refit-*Z.dump")
    assert dump.stat().st_mode & 0o077 == 0, "a backup is readable by its owner only"

    code, said = await refit(
        "restore", str(dump), env={**embedded_env, "REFIT_DATA_DIR": str(second)}
    )

    assert code == 0, said
    assert f"at migration {head_revision()[0]}" in said, said
