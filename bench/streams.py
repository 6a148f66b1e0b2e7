"""Live updates at scale: 1,000 Server-Sent Event streams on one order, held by ONE API process
(`refit api --workers 1`, started for this run beside the 2-process API the rest of the bench
loads), then one status change through the real door (an operator cancels the order, on the
2-process API), and the time until every stream has the event.

The streams are opened by bench/sse_clients.py, in its own process, as browsers open them:
a ticket, then the stream. The row: p50/p99 of the change's time to each stream (from the
move's request being sent), non-2xx (refused openings and streams that never heard it), and
the stream process's CPU per stream for the change; the note: the slowest stream, and memory
per stream (the process's resident memory with every stream open, less before, over the
count).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

from bench import load, servers
from bench.load import Measure
from refit.admin import operators
from refit.admin.tokens import issue_operator_token
from refit.auth.tokens import issue_access_token
from refit.models import OperatorRole
from refit.resources import Resources
from refit.settings import Settings

STREAMS = 1000


async def _pending_order(conn: psycopg.AsyncConnection) -> tuple[str, str]:
    """A pending order (the operator may cancel it) and its seller."""
    cur = await conn.execute(
        "SELECT id, user_id FROM orders WHERE status = 'pending' ORDER BY created_at LIMIT 1"
    )
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("no pending order to stream: the bench's data is wrong")
    return str(row[0]), str(row[1])


async def run(
    conn: psycopg.AsyncConnection,
    resources: Resources,
    *,
    api: str,
    env: dict[str, str],
    minting: Settings,
    log: Path,
    started: list[subprocess.Popen[bytes]],
    count: int = STREAMS,
) -> Measure:
    order_id, seller = await _pending_order(conn)
    async with resources.sessionmaker() as session, session.begin():
        operator = await operators.create_operator(
            session,
            f"bench-{secrets.token_hex(4)}",
            secrets.token_urlsafe(16),
            OperatorRole.ADMIN,
            created_by="cli:bench",
        )
    operator_token = issue_operator_token(minting, operator).token
    seller_token = issue_access_token(minting, uuid.UUID(seller)).token
    # Its own port; the same public URL (the tokens' issuer) as the 2-process API.
    port = servers.free_port()
    process, _ = await servers.start_api(
        {**env, "REFIT_PORT": str(port)}, port, log, started, workers=1
    )
    try:
        args = [
            sys.executable,
            "-m",
            "bench.sse_clients",
            f"http://127.0.0.1:{port}",
            order_id,
            str(count),
            seller_token,
            f"{api}/api/admin/orders/{order_id}/cancel",
            operator_token,
            str(process.pid),
        ]
        out = await load.run_process(args, 90, cwd=load.ROOT)
    finally:
        servers.stop(process)
        started.remove(process)
    result = json.loads(out.strip().splitlines()[-1])
    heard = int(result["heard"])
    refused = sum(result["refused"].values())
    return Measure(
        requests_per_second=None,
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        non_2xx=refused + (int(result["opened"]) - heard),
        extra=result,
        cpu_ms=result["cpu_seconds"] * 1000 / heard if heard else None,
        completed=heard,
    )
