"""Backups: the real `refit backup` / `refit restore` against databases of their own."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest

from refit import db
from tests.conftest import with_database
from tests.payouts.conftest import paying  # noqa: F401  (a fixture: a funded local ledger)
from tests.processes import ROOT

REFIT = str(Path(sys.executable).parent / "refit")


@pytest.fixture
async def make_empty_database(admin_url: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Databases created with nothing in them, as an operator's `createdb` makes one; dropped
    after the test."""
    made: list[str] = []

    async def execute(sql: str) -> None:
        async with await psycopg.AsyncConnection.connect(
            db.libpq_url(admin_url), autocommit=True
        ) as conn:
            await conn.execute(sql)  # type: ignore[arg-type]

    async def make() -> str:
        name = f"refit_r_{uuid.uuid4().hex[:12]}"
        await execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return with_database(admin_url, name)

    yield make
    for name in made:
        await execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_database(make_empty_database: Callable[[], Awaitable[str]]) -> str:
    return await make_empty_database()


def refit_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """The command's environment: this database and a data directory of the test's own."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("REFIT_")},
        "REFIT_ENV": "test",
        "REFIT_DATABASE_URL": database_url,
        "REFIT_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),
    }


async def refit(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """The installed `refit` command, run to its end (bounded): exit status and output."""
    process = await asyncio.create_subprocess_exec(
        REFIT, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode is not None
    return process.returncode, out.decode()
