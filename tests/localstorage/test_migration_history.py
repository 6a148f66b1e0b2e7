"""Migration 0018 on data imported before it: an imported order nothing has moved since becomes
`imported` history and loses what only the browser asserted (tracking number, label URL,
payout signature); one the backend has moved since stays a live order, without the browser's
signature and flagged for an operator; downgrading turns history into `cancelled`."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from refit import db, migrate
from tests.conftest import _admin_execute, with_database

SIGNATURE = "5" * 88


async def _insert_order(
    conn: psycopg.AsyncConnection, user_id: uuid.UUID, status: str
) -> uuid.UUID:
    order_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO orders (id, user_id, status, device_brand, device_model, device_condition,"
        " quoted_price_usd, quoted_price_sol, tracking_number, label_url, payment_tx_signature)"
        " VALUES (%s, %s, %s, 'Apple', 'iPhone 13', 'good', 99999999.99, 1, %s,"
        " 'https://labels.example/x.pdf', %s)",
        (order_id, user_id, status, f"TRK{order_id.hex[:8]}", SIGNATURE),
    )
    await conn.execute(
        "INSERT INTO order_status_history (order_id, status, actor, notes)"
        " VALUES (%s, %s, 'system:import-localstorage', 'imported')",
        (order_id, status),
    )
    await conn.execute(
        "INSERT INTO localstorage_imports (user_id, kind, browser_id, record_id, source)"
        " VALUES (%s, 'order', %s, %s, 'upload')",
        (user_id, f"b-{order_id.hex[:8]}", order_id),
    )
    return order_id


async def _row(conn: psycopg.AsyncConnection, order_id: uuid.UUID) -> tuple:
    cursor = await conn.execute(
        "SELECT status, imported_status, tracking_number, label_url, payment_tx_signature"
        " FROM orders WHERE id = %s",
        (order_id,),
    )
    found = await cursor.fetchone()
    assert found is not None
    return found


async def test_imports_nothing_moved_become_history_and_come_back_cancelled(admin_url):
    name = f"refit_mig_{uuid.uuid4().hex[:10]}"
    await _admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    try:
        await asyncio.to_thread(migrate.upgrade, url, "0017")
        async with await psycopg.AsyncConnection.connect(db.libpq_url(url)) as conn:
            user_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO users (id, wallet_address) VALUES (%s, %s)", (user_id, "w" * 40)
            )
            received = await _insert_order(conn, user_id, "received")
            moved = await _insert_order(conn, user_id, "shipped")
            # The backend moved this one after its import: it is an ordinary order now.
            await conn.execute(
                "INSERT INTO order_status_history (order_id, from_status, status, actor)"
                " VALUES (%s, 'shipped', 'received', 'system:shipping.webhook')",
                (moved,),
            )
            await conn.execute("UPDATE orders SET status = 'received' WHERE id = %s", (moved,))
            await conn.commit()

        await asyncio.to_thread(migrate.upgrade, url)
        async with await psycopg.AsyncConnection.connect(db.libpq_url(url)) as conn:
            assert await _row(conn, received) == ("imported", "received", None, None, None)
            status, shown, tracking, _, signature = await _row(conn, moved)
            # Still a live order, but the browser's signature is gone and an operator is asked
            # to check what the browser set before it is inspected or paid.
            assert (status, shown, signature) == ("received", None, None)
            assert tracking is not None
            cursor = await conn.execute(
                "SELECT attention_reason FROM orders WHERE id = %s", (moved,)
            )
            (reason,) = await cursor.fetchone() or (None,)
            assert reason is not None and reason.startswith("imported from a browser export")

        await asyncio.to_thread(migrate.downgrade, url, "0017")
        async with await psycopg.AsyncConnection.connect(db.libpq_url(url)) as conn:
            cursor = await conn.execute(
                "SELECT status, cancelled_at IS NOT NULL FROM orders WHERE id = %s", (received,)
            )
            assert await cursor.fetchone() == ("cancelled", True)
    finally:
        await _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
