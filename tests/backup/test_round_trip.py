"""Issue 15, point 7: a backup taken with orders in flight restores into an empty database
with every committed order, label and payout, and the restored database serves sellers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from refit import db, one_message
from refit.resources import close_resources, open_resources
from tests.backup.conftest import refit, refit_env
from tests.orders.helpers import place_order
from tests.payouts.conftest import as_quoted_order, pay
from tests.shipping.helpers import buy, quote

# Every row a committed order owns, keyed by order: what must come back whole.
ORDER_ROWS = """
SELECT o.id, o.status, o.user_id, o.payment_tx_signature,
  (SELECT array_agg(h.status ORDER BY h.created_at, h.id)
     FROM order_status_history h WHERE h.order_id = o.id) AS history,
  (SELECT array_agg(l.status || ':' || coalesce(l.transaction_id, '') ORDER BY l.created_at)
     FROM shipping_label_purchases l WHERE l.order_id = o.id) AS labels,
  (SELECT p.status || ':' || coalesce(p.signature, '') || ':' || p.lamports
     FROM payouts p WHERE p.order_id = o.id) AS payout
FROM orders o
"""


async def rows_by_order(url: str) -> dict[uuid.UUID, dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(db.libpq_url(url)) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(ORDER_ROWS)  # type: ignore[arg-type]
        return {row["id"]: row for row in await cursor.fetchall()}


async def labelled_order(client: Any, resources: Any, seller: Any, run_jobs: Any) -> str:
    """An order whose sandbox label was bought by the real label job (awaiting_shipment)."""
    order_id = (await place_order(client, resources, seller))["id"]
    rate = (await quote(client, seller, order_id))[0]
    assert (await buy(client, seller, order_id, rate["rate_id"])).status_code == 202
    await run_jobs()
    return str(order_id)


async def test_backup_with_orders_in_flight_restores_every_committed_order(
    client, resources, make_user, run_jobs, paying, database_url, empty_database, tmp_path
):
    seller = await make_user()
    plain = [str((await place_order(client, resources, seller))["id"]) for _ in range(3)]
    labelled = await labelled_order(client, resources, seller, run_jobs)
    paid, _, payee = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, paid, paying.admin)).status_code == 202
    await run_jobs()  # the payout job: priced, signed, sent, finalized on the local ledger

    before = await rows_by_order(database_url)
    labels = before[uuid.UUID(labelled)]["labels"]
    assert len(labels) == 1 and labels[0].startswith("succeeded:"), labels
    assert before[uuid.UUID(paid)]["payout"].startswith("finalized:")
    assert before[uuid.UUID(paid)]["status"] == "completed"

    # Orders keep coming while the backup runs, each committed with its history row.
    during: list[str] = []
    stop, under_way = asyncio.Event(), asyncio.Event()

    async def keep_ordering() -> None:
        while not stop.is_set():
            writer = await make_user()  # a seller each: orders are rate-limited per seller
            during.append(str((await place_order(client, resources, writer))["id"]))
            if len(during) == 2:
                under_way.set()

    writing = asyncio.create_task(keep_ordering())
    backup_file = tmp_path / "in-flight.dump"
    try:
        # The writer is under way (two orders committed) before the backup starts.
        await asyncio.wait_for(under_way.wait(), timeout=30)
        committed_before_backup = len(during)
        code, said = await refit(
            "backup", str(backup_file), env=refit_env(database_url, tmp_path / "b")
        )
    finally:
        stop.set()
        await writing
    assert code == 0, said
    assert "backup written" in said and "tables" in said, said
    assert during, "orders were written while the backup ran"

    code, said = await refit(
        "restore", str(backup_file), env=refit_env(empty_database, tmp_path / "r")
    )
    assert code == 0, said
    assert "restored" in said, said

    after = await rows_by_order(empty_database)
    # Every order committed before the backup began is back, with history, label and payout.
    for order_id, row in before.items():
        assert after.get(order_id) == row, order_id
    # Orders committed while it ran: wholly there or wholly not, and, as the writer made them
    # one after another, those there all precede those not (one snapshot, one moment).
    kept = [uuid.UUID(order_id) in after for order_id in during]
    assert kept == sorted(kept, reverse=True), kept
    assert committed_before_backup and all(kept[:committed_before_backup]), kept
    for order_id in map(uuid.UUID, during):
        if order_id in after:
            assert after[order_id]["history"] == ["pending"], after[order_id]
    assert all(row["history"] for row in after.values()), "an order without its history"
    assert set(after) <= set(before) | set(map(uuid.UUID, during))

    await _restored_database_serves_sellers(
        resources.settings, empty_database, seller, payee, plain, labelled, paid
    )


async def _restored_database_serves_sellers(
    settings, restored_url, seller, payee, plain, labelled, paid
) -> None:
    """RLS reads in the sellers' own role and the API's order read, on the restored data."""
    restored = await open_resources(settings.model_copy(update={"database_url": restored_url}))
    try:
        query = "SELECT id FROM orders ORDER BY created_at"
        mine = await one_message.fetch_as_user(restored.engine, seller.id, query, {})
        assert [str(r["id"]) for r in mine] == [*plain, labelled]
        theirs = await one_message.fetch_as_user(restored.engine, payee.id, query, {})
        assert [str(r["id"]) for r in theirs] == [paid]
        nobody = await one_message.fetch_as_user(restored.engine, uuid.uuid4(), query, {})
        assert nobody == []
        payout = await one_message.fetch_as_user(
            restored.engine, payee.id, "SELECT status, signature FROM payouts", {}
        )
        assert [p["status"] for p in payout] == ["finalized"] and payout[0]["signature"]
    finally:
        await close_resources(restored)
