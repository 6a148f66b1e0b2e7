"""Webhook intake: Shippo `track_updated` bodies POSTed at the API by wrk, each a new event,
signed as Shippo signs them (the URL token and `Shippo-Auth-Signature`, HMAC-SHA256 over
"<t>.<body>"; REFIT_SHIPPO_WEBHOOK_HMAC_SECRET is set for the run), with a `refit worker`
beside the API handling what is kept.

The bodies are Shippo's shape (refit/carriers/shippo/wire.py `track_body`, as the sandbox
carrier sends them), each with a tracking number no order has: the job finds no parcel and
records so, without asking the carrier. The row counted is wrk's: answers per second over the
run, `accepted` being new events kept and queued (a body sent again, past the file's end, is
`duplicate`: counted in the note, not hidden).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import psycopg

from bench import labels, load, servers
from refit.carriers.shippo.wire import sign
from refit.shipping.webhooks import HANDLE_TASK

# Bodies per second of run the file holds: more than the intake could take on 2 cores.
BODIES_PER_SECOND = 4000
SCRIPT = Path(__file__).with_name("webhooks.lua")
# The warm-up's backlog is about 1,500 jobs, run at 900/s or more.
WARM_UP_HANDLED_SECONDS = 60
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


def body(number: str) -> bytes:
    """A track_updated as Shippo sends it for a parcel pre-transit, in transit, delivered."""
    steps = [("PRE_TRANSIT", 0), ("TRANSIT", 5), ("DELIVERED", 48)]
    history = [
        {
            "object_id": f"ts_{number}_{status}",
            "object_created": (T0 + dt.timedelta(hours=hours)).isoformat(),
            "status": status,
            "status_details": f"Your parcel is {status.lower().replace('_', ' ')}",
            "status_date": (T0 + dt.timedelta(hours=hours)).isoformat(),
            "substatus": {"code": "information_received", "text": "", "action_required": False},
            "location": {"city": "Oakland", "state": "CA", "zip": "94607", "country": "US"},
        }
        for status, hours in steps
    ]
    return json.dumps(
        {
            "event": "track_updated",
            "test": True,
            "data": {
                "carrier": "usps",
                "tracking_number": number,
                "eta": (T0 + dt.timedelta(days=2)).isoformat(),
                "servicelevel": {"token": "usps_priority", "name": "Priority Mail"},
                "metadata": None,
                "address_from": {"city": "Austin", "state": "TX", "zip": "78701", "country": "US"},
                "address_to": {"city": "San Francisco", "state": "CA", "zip": "94117"},
                "tracking_status": history[-1],
                "tracking_history": history,
            },
        },
        separators=(",", ":"),
    ).encode()


def write_requests(path: Path, prefix: str, count: int, secret: str) -> None:
    """`count` signed bodies, one per line, signed now (Shippo's tolerance is 5 minutes)."""
    stamp = int(time.time())
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for i in range(count):
            raw = body(f"{prefix}{i:08d}")
            out.write(f"t={stamp},v1={sign(secret, stamp, raw)} ".encode() + raw + b"\n")


async def warmed_run(
    api: str,
    env: dict[str, str],
    work: Path,
    tag: str,
    *,
    warm_up_seconds: float,
    seconds: float,
    conn: psycopg.AsyncConnection,
    worker: subprocess.Popen[bytes],
) -> Coroutine[Any, Any, load.Measure]:
    """Signed bodies posted for `warm_up_seconds` and their jobs left to run (bounded); then
    the measured run's bodies written (files under `work`, named by `tag`) and its `post`
    returned, to await (or to hand to a caller that measures the API's CPU around it)."""
    secret, token = env["REFIT_SHIPPO_WEBHOOK_HMAC_SECRET"], env["REFIT_SHIPPO_WEBHOOK_TOKEN"]
    warm = work / f"webhooks-warm-{tag}.txt"
    write_requests(warm, f"W{tag}X", int(warm_up_seconds * 2000), secret)
    await post(api, token, warm, seconds=warm_up_seconds, conn=conn)
    # The measured run then starts with the worker level with the webhooks, as a steady
    # stream keeps it: not behind the warm-up's backlog, which made the measured seconds'
    # worker run 1,500 more jobs than the 6,000 accepted in them.
    due = await labels.jobs_run(conn, task=HANDLE_TASK, seconds=WARM_UP_HANDLED_SECONDS)
    measured = work / f"webhooks-{tag}.txt"
    write_requests(measured, f"B{tag}X", int(BODIES_PER_SECOND * seconds), secret)
    return post(api, token, measured, seconds=seconds, conn=conn, worker=worker, warm_up_due=due)


async def post(
    api: str,
    token: str,
    requests: Path,
    *,
    seconds: float,
    conn: psycopg.AsyncConnection,
    worker: subprocess.Popen[bytes] | None = None,
    warm_up_due: int = 0,
) -> load.Measure:
    """wrk over the signed bodies; the answers tallied, and how far the worker got (and its
    CPU per job it finished meanwhile; `warm_up_due`: the warm-up's jobs it had yet to run)."""
    began = await _clock(conn)
    done_before = await _succeeded(conn)
    worker_cpu = servers.group_cpu_seconds(worker) if worker else 0.0
    measure = await load.wrk(
        f"{api}/api/webhooks/shippo",
        seconds=seconds,
        script=SCRIPT,
        script_args=[str(requests), f"/api/webhooks/shippo?token={token}", str(load.THREADS)],
    )
    e = measure.extra
    answered = sum(int(e.get(k, 0)) for k in ("accepted", "duplicate", "kept"))  # type: ignore[call-overload]
    accepted = int(e.get("accepted", 0))  # type: ignore[call-overload]
    # Accepted per second: wrk's rate, less any answer that was not a new event kept.
    if measure.completed:
        measure.requests_per_second *= accepted / measure.completed
    measure.non_2xx = measure.completed - answered + int(e.get("socket_errors", 0))  # type: ignore[call-overload]
    cur = await conn.execute(
        "SELECT count(*), count(processed_at) FROM webhook_inbox WHERE received_at >= %s",
        (began,),
    )
    row = await cur.fetchone()
    e["kept_rows"], e["handled_in_run"] = (row[0], row[1]) if row else (0, 0)
    cur = await conn.execute(
        "SELECT status, count(*) FROM procrastinate_jobs WHERE task_name = %s GROUP BY 1",
        (HANDLE_TASK,),
    )
    e["jobs"] = {str(status): n for status, n in await cur.fetchall()}
    finished = await _succeeded(conn) - done_before
    e["worker_jobs"] = finished
    e["warm_up_due"] = warm_up_due
    if worker and finished:
        e["worker_cpu_ms"] = (servers.group_cpu_seconds(worker) - worker_cpu) * 1000 / finished
    return measure


async def drop_backlog(conn: psycopg.AsyncConnection) -> None:
    """The run's unhandled webhooks marked handled and their waiting jobs deleted."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM procrastinate_jobs WHERE task_name = %s AND status = 'todo'",
            (HANDLE_TASK,),
        )
        await conn.execute(
            "UPDATE webhook_inbox SET processed_at = now(), outcome = 'bench: not handled' "
            "WHERE processed_at IS NULL"
        )


async def _succeeded(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s AND status = 'succeeded'",
        (HANDLE_TASK,),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _clock(conn: psycopg.AsyncConnection) -> dt.datetime:
    cur = await conn.execute("SELECT clock_timestamp()")
    row = await cur.fetchone()
    assert row
    stamp: dt.datetime = row[0]
    return stamp


@contextlib.asynccontextmanager
async def worker_beside(
    conn: psycopg.AsyncConnection,
    env: dict[str, str],
    log: Path,
    started: list[subprocess.Popen[bytes]],
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A `refit worker` (as the label bench runs it) for the block, stopped after it."""
    worker = servers.start_worker(env, labels.CONCURRENCY, log, started)
    try:
        deadline = time.monotonic() + servers.READY_TIMEOUT_SECONDS
        while not await labels.worker_alive(conn):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {log}")
            await asyncio.sleep(0.2)
        yield worker
    finally:
        servers.stop(worker)
        started.remove(worker)
