"""Migrations go up, down to base and up again on a real PostgreSQL."""

import asyncio
import uuid

import psycopg

from refit import db, migrate
from tests.conftest import _admin_execute, with_database


async def _tables(url: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(db.libpq_url(url)) as conn:
        rows = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in await rows.fetchall()}


async def test_up_down_up(admin_url):
    name = f"refit_mig_{uuid.uuid4().hex[:10]}"
    await _admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        first = await _tables(url)
        assert {
            "users",
            "shipping_addresses",
            "orders",
            "order_status_history",
            "shipping_events",
            "procrastinate_jobs",
        } <= first

        await asyncio.to_thread(migrate.downgrade, url, "base")
        assert await _tables(url) <= {"alembic_version"}

        await asyncio.to_thread(migrate.upgrade, url)
        assert await _tables(url) == first
    finally:
        await _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
