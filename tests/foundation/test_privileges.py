"""What the database lets the `anon` and `authenticated` roles do, table by table, on a
database whose default privileges grant every new table to them (as Supabase's do)."""

import asyncio
import uuid

import psycopg

from refit import db, migrate
from tests.conftest import _admin_execute, with_database

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")

# Exactly what a signed-in seller's role may do; RLS policies then narrow it to own rows.
AUTHENTICATED = {
    "users": {"SELECT"},
    "shipping_addresses": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    # Orders, their history and quotes are written by the service only (the one door).
    "orders": {"SELECT"},
    "order_status_history": {"SELECT"},
    "shipping_events": {"SELECT"},
    "catalog_models": {"SELECT"},
    "catalog_variants": {"SELECT"},
    "condition_grades": {"SELECT"},
    "quotes": {"SELECT"},
    # The owner sees the inspection of their device and its photos.
    "inspections": {"SELECT"},
    "evidence_photos": {"SELECT"},
    # payouts: SELECT on some columns only (see PAYOUT_COLUMNS), so no table privilege.
}
# What a seller may read of their payouts: not the signed bytes, the operator or errors.
PAYOUT_COLUMNS = {
    "id",
    "order_id",
    "status",
    "amount_usd",
    "amount_sol",
    "lamports",
    "signature",
    "created_at",
    "finalized_at",
}
# Public endpoints (the catalog, sign-in) are served by the service role: anon needs nothing.
ANON: dict[str, set[str]] = {}


async def test_roles_get_exactly_their_privileges_under_supabase_defaults(admin_url):
    name = f"refit_priv_{uuid.uuid4().hex[:10]}"
    await _admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    try:
        async with await psycopg.AsyncConnection.connect(
            db.libpq_url(url), autocommit=True
        ) as conn:
            # Supabase's defaults: every new table, sequence and function to both roles.
            for role in ("anon", "authenticated"):
                await conn.execute(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
                    f"'{role}') THEN CREATE ROLE {role} NOLOGIN; END IF; END $$"
                )
            await conn.execute(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT ALL ON TABLES TO anon, authenticated"
            )
            await conn.execute(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT ALL ON SEQUENCES TO anon, authenticated"
            )
        await asyncio.to_thread(migrate.upgrade, url)

        async with await psycopg.AsyncConnection.connect(db.libpq_url(url)) as conn:
            tables = [
                r[0]
                for r in await (
                    await conn.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    )
                ).fetchall()
            ]

            async def granted(role: str) -> dict[str, set[str]]:
                result: dict[str, set[str]] = {}
                for table in tables:
                    privileges = set()
                    for privilege in PRIVILEGES:
                        row = await (
                            await conn.execute(
                                "SELECT has_table_privilege(%s, %s, %s)",
                                (role, f"public.{table}", privilege),
                            )
                        ).fetchone()
                        if row and row[0]:
                            privileges.add(privilege)
                    if privileges:
                        result[table] = privileges
                return result

            assert await granted("authenticated") == AUTHENTICATED
            readable = await (
                await conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = "
                    "'payouts' AND has_column_privilege('authenticated', 'public.payouts', "
                    "column_name, 'SELECT')"
                )
            ).fetchall()
            assert {r[0] for r in readable} == PAYOUT_COLUMNS
            assert await granted("anon") == ANON

            callable_queue_functions = await (
                await conn.execute(
                    "SELECT p.proname FROM pg_proc p JOIN pg_namespace n "
                    "ON n.oid = p.pronamespace WHERE n.nspname = 'public' "
                    "AND p.proname LIKE 'procrastinate%%' AND ("
                    "has_function_privilege('anon', p.oid, 'EXECUTE') OR "
                    "has_function_privilege('authenticated', p.oid, 'EXECUTE'))"
                )
            ).fetchall()
            assert callable_queue_functions == []
            # Every table is under Row Level Security, system tables included.
            without_rls = await (
                await conn.execute(
                    "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                    "c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' "
                    "AND NOT c.relrowsecurity AND c.relname <> 'alembic_version'"
                )
            ).fetchall()
            assert without_rls == []
    finally:
        await _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
