"""The bench's database of its own, beside the one REFIT_BENCH_DATABASE_URL names: one name,
made and dropped the same way by `make bench`, bench/writes.py and bench/read_cost.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import make_url

from refit import db


@dataclass(frozen=True)
class Scratch:
    admin: str  # libpq URL of the database the server already has (where CREATE runs)
    name: str
    url: str  # SQLAlchemy URL of the scratch database

    async def create(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.admin, autocommit=True) as conn:
            await conn.execute(f'CREATE DATABASE "{self.name}"')  # type: ignore[arg-type]

    async def drop(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.admin, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')  # type: ignore[arg-type]


def scratch(server_url: str, prefix: str = "refit_bench") -> Scratch:
    """A fresh name on the server of `server_url` (any database there), not yet made."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = make_url(db.sqlalchemy_url(server_url)).set(database=name)
    return Scratch(
        db.libpq_url(db.sqlalchemy_url(server_url)), name, url.render_as_string(hide_password=False)
    )
