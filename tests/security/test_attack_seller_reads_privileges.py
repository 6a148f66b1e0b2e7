"""The red team on the sellers' read functions (migration 0029) as a direct SQL caller.

`seller_order_json(seller, wanted)` and `seller_orders_page(seller, ...)` take the seller's id
as a parameter and set the role and claims to it themselves. Whoever may EXECUTE them may
therefore read any seller's orders by naming that seller. On Supabase the Data API
(PostgREST) connects as `authenticator`, a member of `anon` and `authenticated`, and exposes
every function of `public` it may call as `/rest/v1/rpc/<name>`, with the public anon key;
PostgreSQL grants EXECUTE to PUBLIC by default and Supabase's default privileges grant every
new function to `anon` and `authenticated`. Refusal: only the service may call them."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from refit import db, migrate
from tests.conftest import _admin_execute, with_database
from tests.orders.helpers import place_order

_FUNCTIONS = (
    "seller_order_json(uuid, uuid)",
    "seller_orders_page(uuid, int, timestamptz, uuid)",
)


async def test_neither_public_anon_nor_authenticated_may_execute_the_read_functions(resources):
    """Attack: a caller holding only `anon` or `authenticated` (or any login role, through
    PUBLIC) calls the functions. Refusal: no EXECUTE for any of them."""
    async with resources.engine.connect() as conn:
        for function in _FUNCTIONS:
            for role in ("anon", "authenticated"):
                allowed = await conn.scalar(
                    text("SELECT has_function_privilege(:role, :fn, 'EXECUTE')"),
                    {"role": role, "fn": function},
                )
                assert not allowed, (role, function)
            to_public = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_proc p, aclexplode(coalesce(p.proacl,"
                    " acldefault('f', p.proowner))) a"
                    " WHERE p.oid = CAST(:fn AS regprocedure) AND a.grantee = 0"
                ),
                {"fn": function},
            )
            assert to_public == 0, function


async def test_a_data_api_caller_cannot_read_another_sellers_orders(
    client, resources, settings, make_user
):
    """Attack, as Supabase's Data API would run it: a login role that is a member of `anon`
    and `authenticated` (PostgREST's `authenticator`) takes `anon` (the public key) or
    `authenticated` with Bob's own claims (Bob's token), then calls the functions with
    Alice's id. Also a plain-PostgreSQL login that holds `anon` only. Refusal: permission
    denied, never Alice's order or list."""
    alice, bob = await make_user(), await make_user()
    order = uuid.UUID((await place_order(client, resources, alice))["id"])
    assert settings.database_url
    suffix = uuid.uuid4().hex[:10]
    authenticator, anon_only = f"attack_authenticator_{suffix}", f"attack_anon_only_{suffix}"
    admin = db.libpq_url(settings.database_url)
    owner = await asyncpg.connect(admin)
    try:
        await owner.execute(f"CREATE ROLE {authenticator} LOGIN NOINHERIT")
        await owner.execute(f"GRANT anon, authenticated TO {authenticator}")
        await owner.execute(f"CREATE ROLE {anon_only} LOGIN NOINHERIT")
        await owner.execute(f"GRANT anon TO {anon_only}")
        bob_claims = json.dumps({"sub": str(bob.id), "role": "authenticated"})
        attempts = [
            (authenticator, "anon", json.dumps({"role": "anon"})),
            (authenticator, "authenticated", bob_claims),
            (anon_only, "anon", json.dumps({"role": "anon"})),
        ]
        for login, role, claims in attempts:
            url = make_url(settings.database_url).set(username=login, password=None)
            conn = await asyncpg.connect(db.libpq_url(url.render_as_string(hide_password=False)))
            try:
                for statement, args in (
                    ("SELECT detail FROM seller_order_json($1, $2)", (alice.id, order)),
                    ("SELECT id FROM seller_orders_page($1, 10, NULL, NULL)", (alice.id,)),
                ):
                    where = (login, role, statement)
                    # PostgREST's request: one transaction, its role and claims local to it.
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL ROLE {role}")
                        await conn.execute(
                            "SELECT set_config('request.jwt.claims', $1, true)", claims
                        )
                        try:
                            answer = await conn.fetch(statement, *args)
                        except asyncpg.InsufficientPrivilegeError:
                            continue
                    leaked = [r for r in answer if any(v is not None for v in r)]
                    assert not leaked, f"{where}: read Alice's orders: {leaked!r}"
                    pytest.fail(f"{where}: may call it")
            finally:
                await conn.close()
    finally:
        for login in (authenticator, anon_only):
            await owner.execute(f"DROP ROLE IF EXISTS {login}")
        await owner.close()


@pytest.mark.timeout(180)
async def test_under_supabase_default_privileges_no_read_function_is_granted(admin_url):
    """Attack: Supabase's default privileges grant every function created in `public` to
    `anon` and `authenticated` by name (REVOKE ... FROM PUBLIC alone leaves those). Refusal:
    after every migration neither role may call the sellers' read functions."""
    name = f"refit_attack_{uuid.uuid4().hex[:10]}"
    await _admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    try:
        async with await psycopg.AsyncConnection.connect(
            db.libpq_url(url), autocommit=True
        ) as conn:
            await conn.execute(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT ALL ON FUNCTIONS TO anon, authenticated"
            )
            await conn.execute(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT ALL ON TABLES TO anon, authenticated"
            )
        await asyncio.to_thread(migrate.upgrade, url)
        async with await psycopg.AsyncConnection.connect(db.libpq_url(url)) as conn:
            for function in _FUNCTIONS:
                for role in ("anon", "authenticated"):
                    row = await (
                        await conn.execute(
                            "SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, function)
                        )
                    ).fetchone()
                    assert row is not None and not row[0], (role, function)
    finally:
        await _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
