"""Seed the bench database in SQL, set-based: users, addresses, quotes, orders and history.

Every row of one size is made by a few INSERT ... SELECT FROM generate_series statements in one
transaction, so 1,000,000 orders take minutes, not hours. Ids are md5 of a name and a number,
so quotes, orders and history written by separate statements find each other without joins,
and a bigger size grows the same tables (orders 10,001..1,000,000 are added to the first 10,000).

The data is what a live service would hold in steady state, so the worker's periodic sweeps
find nothing to do while the label benchmark runs: open orders are recent (pending expires
after 30 days), most are completed or cancelled, no order sits in processing_shipment.

Every function takes an autocommit connection (VACUUM needs one) and opens its own
transaction where it writes.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import errors

# The seller whose order is read and whose orders are listed: orders 1..HOT_ORDERS are theirs.
HOT_ORDERS = 200
# Sellers who create orders in the create benchmark: many, so their requests do not all lock
# one address row (create takes the address FOR SHARE), as real sellers would not.
CREATORS = 200
ORDERS_PER_USER = 10


def user_id(n: int) -> uuid.UUID:
    return _md5_uuid(f"bench-user-{n}")


def _md5_uuid(name: str) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(name.encode()).hexdigest())


HOT_SELLER = user_id(0)

# n -> the order's seller, status and creation time, computed the same way by every statement.
# The hash of n stands in for random(): the quote, the order and its history agree on it.
_SOURCE = """
WITH src AS (
  SELECT n,
    CASE WHEN n <= {hot} THEN 0 ELSE 1 + mod(n, %(users)s) END AS u,
    CASE WHEN n <= {hot} THEN 'completed'
         WHEN mod(n, 100) < 5 THEN 'pending'
         WHEN mod(n, 100) < 10 THEN 'shipped'
         WHEN mod(n, 100) < 20 THEN 'cancelled'
         ELSE 'completed' END AS status,
    (ARRAY['Apple','Apple','Samsung','Google'])[1 + mod(n, 4)] AS brand,
    (ARRAY['iPhone 13','iPhone 14','Galaxy S22','Pixel 7'])[1 + mod(n, 4)] AS model,
    (ARRAY['128GB','256GB'])[1 + mod(n, 2)] AS storage,
    (ARRAY['excellent','good','fair'])[1 + mod(n, 3)] AS condition,
    (250 + mod(n, 400))::numeric(10, 2) AS usd,
    -- Open orders are at most a week old, the rest spread over a year.
    now() - make_interval(secs => CASE WHEN n > {hot} AND mod(n, 100) < 10
                                       THEN mod(n::bigint * 7919, 604800)
                                       ELSE mod(n::bigint * 7919, 31536000) END) AS at
  FROM generate_series(%(lo)s::int, %(hi)s::int) AS n
)
""".replace("{hot}", str(HOT_ORDERS))

# Seller u: a user and their default address (psycopg sends one statement per execute).
_USERS = (
    """
INSERT INTO users (id, wallet_address, created_at, updated_at)
SELECT md5('bench-user-' || u)::uuid, 'BenchWallet' || u, now() - interval '400 days',
       now() - interval '400 days'
FROM generate_series(%(lo)s::int, %(hi)s::int) AS u
""",
    """
INSERT INTO shipping_addresses (id, user_id, name, street1, city, state, zip, is_default,
                                is_validated)
SELECT md5('bench-address-' || u)::uuid, md5('bench-user-' || u)::uuid, 'Seller ' || u,
       (100 + mod(u, 9000)) || ' Congress Ave', 'Austin', 'TX', (10000 + mod(u, 89999))::text,
       true, true
FROM generate_series(%(lo)s::int, %(hi)s::int) AS u
""",
)

_QUOTES = (
    _SOURCE
    + """
INSERT INTO quotes (id, user_id, device_brand, device_model, device_storage, device_category,
                    device_condition, base_price_usd, price_factor, price_usd, price_sol,
                    price_lamports, sol_usd_rate, rate_source, rate_timestamp, expires_at,
                    created_at)
SELECT md5('bench-quote-' || n)::uuid, md5('bench-user-' || u)::uuid, brand, model, storage,
       'phone', condition, usd, 1, usd, round(usd / 150, 4), (round(usd / 150, 4) * 1e9)::bigint,
       150, 'fixed', at, at + interval '14 days', at
FROM src
"""
)

_ORDERS = (
    _SOURCE
    + """
INSERT INTO orders (id, user_id, status, device_brand, device_model, device_storage,
                    device_category, device_condition, quote_id, quoted_price_usd,
                    quoted_price_sol, quoted_price_lamports, shipping_address_id, created_at,
                    updated_at, shipped_at, completed_at, cancelled_at)
SELECT md5('bench-order-' || n)::uuid, md5('bench-user-' || u)::uuid, status, brand, model,
       storage, 'phone', condition, md5('bench-quote-' || n)::uuid, usd, round(usd / 150, 4),
       (round(usd / 150, 4) * 1e9)::bigint, md5('bench-address-' || u)::uuid, at,
       CASE WHEN status = 'pending' THEN at ELSE least(at + interval '2 days', now()) END,
       CASE WHEN status IN ('shipped', 'completed') THEN at + interval '1 day' END,
       CASE WHEN status = 'completed' THEN least(at + interval '2 days', now()) END,
       CASE WHEN status = 'cancelled' THEN least(at + interval '2 days', now()) END
FROM src
"""
)

# The creation row for every order, and the move to where it is now for those that moved.
_HISTORY = (
    _SOURCE
    + """
INSERT INTO order_status_history (order_id, from_status, status, actor, notes, created_at)
SELECT md5('bench-order-' || n)::uuid, NULL, 'pending', 'user:' || md5('bench-user-' || u)::uuid,
       'order created', at
FROM src
UNION ALL
SELECT md5('bench-order-' || n)::uuid,
       CASE status WHEN 'shipped' THEN 'awaiting_shipment' WHEN 'cancelled' THEN 'pending'
                   ELSE 'inspecting' END,
       status, CASE status WHEN 'completed' THEN 'operator:bench' ELSE 'system:bench' END,
       NULL, least(at + interval '2 days', now())
FROM src WHERE status <> 'pending'
"""
)

_CREATORS = (
    """
INSERT INTO users (id, wallet_address)
SELECT md5('bench-creator-' || c)::uuid, 'BenchCreator' || c FROM generate_series(1, %(n)s) c
""",
    """
INSERT INTO shipping_addresses (id, user_id, name, street1, city, state, zip, is_default)
SELECT md5('bench-creator-address-' || c)::uuid, md5('bench-creator-' || c)::uuid,
       'Creator ' || c, (100 + c) || ' Lamar Blvd', 'Austin', 'TX', '78701', true
FROM generate_series(1, %(n)s) c
""",
)


@dataclass(frozen=True)
class Spare:
    """A quote a creator may turn into an order: unexpired, unused, theirs."""

    user_id: uuid.UUID
    quote_id: uuid.UUID
    address_id: uuid.UUID


async def grow(conn: psycopg.AsyncConnection, have: int, want: int) -> float:
    """Add orders have+1..want (with their sellers, quotes and history); seconds taken."""
    started = time.perf_counter()
    users_have = _users_for(have) if have else -1
    users_want = _users_for(want)
    async with conn.transaction():
        await _fast_load(conn)
        for statement in _USERS:
            await conn.execute(statement, {"lo": users_have + 1, "hi": users_want})
        if not have:
            for statement in _CREATORS:
                await conn.execute(statement, {"n": CREATORS})
        params = {"lo": have + 1, "hi": want, "users": users_want}
        for statement in (_QUOTES, _ORDERS, _HISTORY):
            await conn.execute(statement, params)  # type: ignore[arg-type]
    return time.perf_counter() - started


def _users_for(orders: int) -> int:
    # Sellers 1..U share the orders after the hot seller's; seller 0 is the hot seller.
    return max(100, orders // ORDERS_PER_USER)


async def _fast_load(conn: psycopg.AsyncConnection) -> None:
    # The rows are consistent by construction; skipping the per-row foreign-key triggers
    # (replica mode, superusers only) is what keeps 1M orders within a few minutes. Without
    # the privilege the checks simply run.
    await conn.execute("SET LOCAL synchronous_commit = off")
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
    except errors.InsufficientPrivilege:
        pass


async def tidy(conn: psycopg.AsyncConnection) -> float:
    """VACUUM ANALYZE and a checkpoint, so no autovacuum or checkpoint of the seed's writes
    lands inside a measurement, and the planner knows the sizes."""
    started = time.perf_counter()
    for table in ("users", "shipping_addresses", "quotes", "orders", "order_status_history"):
        await conn.execute(f"VACUUM (ANALYZE) {table}")  # type: ignore[arg-type]
    try:
        await conn.execute("CHECKPOINT")
    except errors.InsufficientPrivilege:
        pass
    return time.perf_counter() - started


async def spare_quotes(conn: psycopg.AsyncConnection, count: int) -> list[Spare]:
    """`count` fresh quotes spread over the creators, for the create benchmark."""
    async with conn.transaction():
        cur = await conn.execute(
            """
            INSERT INTO quotes (user_id, device_brand, device_model, device_storage,
                                device_category, device_condition, base_price_usd, price_factor,
                                price_usd, price_sol, price_lamports, sol_usd_rate, rate_source,
                                rate_timestamp, expires_at)
            SELECT md5('bench-creator-' || (1 + mod(i, %(creators)s)))::uuid, 'Apple', 'iPhone 13',
                   '128GB', 'phone', 'good', 400, 0.75, 300, 2, 2000000000, 150, 'fixed',
                   now(), now() + interval '1 day'
            FROM generate_series(1, %(n)s) i
            RETURNING id, user_id
            """,
            {"creators": CREATORS, "n": count},
        )
        rows = await cur.fetchall()
    addresses = {
        _md5_uuid(f"bench-creator-{c}"): _md5_uuid(f"bench-creator-address-{c}")
        for c in range(1, CREATORS + 1)
    }
    return [Spare(user_id=u, quote_id=q, address_id=addresses[u]) for q, u in rows]


async def hot_order(conn: psycopg.AsyncConnection) -> uuid.UUID:
    """The hot seller's newest order: the one every read benchmark reads."""
    cur = await conn.execute(
        "SELECT id FROM orders WHERE user_id = %s ORDER BY created_at DESC LIMIT 1",
        (HOT_SELLER,),
    )
    row = await cur.fetchone()
    assert row, "seed first"
    return row[0]


async def order_count(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT count(*) FROM orders")
    row = await cur.fetchone()
    return int(row[0]) if row else 0
