"""Label jobs per second: pending orders get a chosen sandbox rate, move to
processing_shipment through the one door (which queues their label jobs in its transaction),
and a real `refit worker` process buys, renders and stores every label.

The rate quotes are written in SQL, as the rates endpoint would have left them (the sandbox
carrier's shipment and rate objects plus our shipping_rate_quotes row): the benchmark is the
job, not the seller's rates request.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import psycopg

from bench import servers
from bench.load import Measure
from refit import queue
from refit.models import OrderStatus
from refit.orders.service import transition
from refit.resources import Resources
from refit.shipping.parcels import parcel_for
from refit.shipping.rates import warehouse

CONCURRENCY = 10
TIMEOUT_SECONDS = 180
# Labels bought before the measured ones: the worker's first label imports reportlab and its
# fonts (~0.4 s of CPU once a process), as the HTTP rows' warm-up pays the API's first requests.
WARMUP_LABELS = 30

# One statement: pick the orders, give each a sandbox shipment and rate, quote that rate,
# and choose it on the order.
_PREPARE = """
WITH picked AS (
  SELECT o.id, jsonb_strip_nulls(jsonb_build_object(
           'name', a.name, 'street1', a.street1, 'street2', a.street2, 'city', a.city,
           'state', a.state, 'zip', a.zip, 'country', a.country)) AS address
  FROM orders o JOIN shipping_addresses a ON a.id = o.shipping_address_id
  WHERE o.status = 'pending' AND o.shipping_rate_id IS NULL
  ORDER BY o.created_at DESC
  LIMIT %(count)s
  FOR UPDATE OF o
), shipments AS (
  INSERT INTO sandbox_carrier_objects (object_id, kind, data)
  SELECT 'sbx_shp_bench_' || id, 'shipment', jsonb_build_object(
           'address_from', address, 'address_to', %(warehouse)s::jsonb,
           'parcel', %(parcel)s::jsonb, 'metadata', 'order:' || id)
  FROM picked
), rates AS (
  INSERT INTO sandbox_carrier_objects (object_id, kind, data)
  SELECT 'sbx_rate_bench_' || id, 'rate', jsonb_build_object(
           'shipment', 'sbx_shp_bench_' || id, 'carrier', 'USPS', 'service', 'Priority Mail',
           'amount', '9.40')
  FROM picked
), quoted AS (
  INSERT INTO shipping_rate_quotes (order_id, rate_id, carrier_name, shipment_id, carrier,
                                    service, service_token, amount, currency, estimated_days,
                                    address_fingerprint, expires_at)
  SELECT id, 'sbx_rate_bench_' || id, 'sandbox', 'sbx_shp_bench_' || id, 'USPS',
         'Priority Mail', 'usps_priority', 9.40, 'USD', 2, 'bench', now() + interval '6 days'
  FROM picked
)
UPDATE orders o SET shipping_rate_id = 'sbx_rate_bench_' || o.id
FROM picked WHERE o.id = picked.id
RETURNING o.id
"""


async def _prepare(conn: psycopg.AsyncConnection, resources: Resources, count: int) -> list:
    parcel = {k: str(v) for k, v in asdict(parcel_for("phone")).items()}
    async with conn.transaction():
        cur = await conn.execute(
            _PREPARE,
            {
                "count": count,
                "warehouse": json.dumps(warehouse(resources.settings).as_dict()),
                "parcel": json.dumps(parcel),
            },
        )
        return [row[0] for row in await cur.fetchall()]


async def worker_alive(conn: psycopg.AsyncConnection) -> bool:
    cur = await conn.execute(
        "SELECT count(*) FROM procrastinate_workers "
        "WHERE last_heartbeat > now() - interval '30 seconds'"
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def run(
    conn: psycopg.AsyncConnection,
    resources: Resources,
    *,
    count: int,
    env: dict[str, str],
    log: Path,
    started: list[subprocess.Popen[bytes]],
) -> Measure:
    prepared = await _prepare(conn, resources, WARMUP_LABELS + count)
    warmup, ids = prepared[:WARMUP_LABELS], prepared[WARMUP_LABELS:]
    worker = servers.start_worker(env, CONCURRENCY, log, started)
    try:
        deadline = time.monotonic() + servers.READY_TIMEOUT_SECONDS
        while not await worker_alive(conn):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {log}")
            await asyncio.sleep(0.2)

        # The deferring side needs the task names registered in this process too.
        queue.queue.perform_import_paths()
        await _ship(resources, warmup)
        await _wait_done(conn, warmup)
        # Jobs left by the scenarios before (the webhook row's, the warm-up's emails) are run
        # first, so the row measures label jobs and not another scenario's backlog.
        leftover = await jobs_run(conn)
        cpu = servers.group_cpu_seconds(worker)
        await _ship(resources, ids)
        # Committed: the worker is woken by the jobs' NOTIFY. Time runs on the database clock
        # from here to each order's move to awaiting_shipment.
        cur = await conn.execute("SELECT clock_timestamp()")
        row = await cur.fetchone()
        assert row
        committed = row[0]
        finished = await _wait_done(conn, ids)
        cpu = servers.group_cpu_seconds(worker) - cpu
    finally:
        servers.stop(worker)
        started.remove(worker)
    await _parcels_quiet(conn, prepared)

    cur = await conn.execute(
        """
        SELECT extract(epoch FROM h.created_at - %(t)s) FROM order_status_history h
        WHERE h.order_id = ANY(%(ids)s) AND h.status = 'awaiting_shipment'
        ORDER BY 1
        """,
        {"t": committed, "ids": ids},
    )
    seconds = [float(r[0]) for r in await cur.fetchall()]
    elapsed = seconds[-1] if seconds else TIMEOUT_SECONDS
    return Measure(
        requests_per_second=len(seconds) / elapsed if elapsed > 0 else 0.0,
        p50_ms=None,
        p99_ms=None,
        non_2xx=len(ids) - len(seconds),
        extra={
            "orders": len(ids),
            "labelled": len(seconds),
            "finished": finished,
            "warm-up labels": len(warmup),
            "jobs still due before the run": leftover,
        },
        cpu_ms=cpu * 1000 / len(seconds) if seconds else None,
        completed=len(seconds),
    )


async def _parcels_quiet(conn: psycopg.AsyncConnection, ids: list[uuid.UUID]) -> None:
    """The labels' sandbox parcels move on along their clock, and every minute a worker runs
    the sandbox queues a webhook for each one that moved: into the next rows measured (the
    next size's webhook row met a thousand of them). No row measures those, so the parcels
    are marked as told their last step."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE sandbox_carrier_objects "
            "SET data = data || jsonb_build_object('webhook_status', 'DELIVERED') "
            "WHERE kind = 'transaction' AND data->>'metadata' = ANY(%(metadata)s)",
            {"metadata": [f"order:{order_id}" for order_id in ids]},
        )


async def _ship(resources: Resources, ids: list[uuid.UUID]) -> None:
    """The orders to processing_shipment through the one door, in one transaction: their label
    jobs are queued with it."""
    async with resources.sessionmaker() as session, session.begin():
        for order_id in ids:
            await transition(
                session,
                order_id,
                OrderStatus.PROCESSING_SHIPMENT,
                actor="system:bench",
                expected_from={OrderStatus.PENDING},
            )


async def jobs_run(
    conn: psycopg.AsyncConnection, *, task: str | None = None, seconds: float = TIMEOUT_SECONDS
) -> int:
    """Until no job (of `task`, or any) is due or running, bounded by `seconds`; how many
    still were at the bound."""
    deadline = time.monotonic() + seconds
    while True:
        cur = await conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE (status = 'doing' OR "
            "(status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now()))) "
            "AND (%(task)s::text IS NULL OR task_name = %(task)s)",
            {"task": task},
        )
        row = await cur.fetchone()
        due = row[0] if row else 0
        if not due or time.monotonic() > deadline:
            return int(due)
        await asyncio.sleep(0.2)


async def _wait_done(conn: psycopg.AsyncConnection, ids: list[uuid.UUID]) -> bool:
    """Until every order has its label (or gave up with a label_error), bounded in time."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE status <> 'processing_shipment' "
            "OR label_error IS NOT NULL) FROM orders WHERE id = ANY(%s)",
            (ids,),
        )
        row = await cur.fetchone()
        if row and row[0] >= len(ids):
            return True
        # Seldom: each look probes every order (3.6 ms of PostgreSQL's CPU for 3,000), taken
        # from the worker it measures; the rate is timed by the orders' own history rows.
        await asyncio.sleep(1.0)
    return False
