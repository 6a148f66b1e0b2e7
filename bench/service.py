"""The service as users load it: ReFit's API (2 processes) beside the Node peer and pgbench,
on one database, at each size of the orders table (REFIT_BENCH_SIZES, default 10k and 1M).

Every server reads the same order, the hot seller's newest, with that seller's claims, so
each answer is one RLS-visible row (and its history, for ReFit). Servers start once; the
table grows between sizes. ReFit alone then takes signed carrier webhooks with its worker
beside it (bench/webhooks.py), and a status change to 1,000 event streams held by one API
process of its own (bench/streams.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import labels, load, seed, servers, streams, webhooks
from bench.table import Row, render
from refit.auth.tokens import issue_access_token
from refit.orders.schemas import OrderRead
from refit.resources import Resources
from refit.settings import Settings

SIZES = [int(s) for s in os.environ.get("REFIT_BENCH_SIZES", "10000,1000000").split(",") if s]
DURATION = float(os.environ.get("REFIT_BENCH_DURATION", "8"))
RATE = float(os.environ.get("REFIT_BENCH_RATE", "500"))
LABEL_ORDERS = int(os.environ.get("REFIT_BENCH_LABEL_ORDERS", "1000"))
# Each server gets this long at the scenario's load before the measured run, so pools are
# full and nothing is measured cold.
WARMUP_SECONDS = 2.0
# Quotes for the create run: more than any server could use in the run (it wraps, visibly).
QUOTES_PER_SECOND = 1500
# Where the Node peer's copy (bench/node_orders with its node_modules) lives across runs.
PEER_HOME = servers.ROOT / ".refit" / "bench"


@dataclass
class Setup:
    database_url: str  # SQLAlchemy form, for ReFit
    conninfo: str  # libpq form, for psycopg, pgbench and node
    redis_url: str
    key_prefix: str
    work: Path  # this run's directory: logs, pgbench logs, label files
    resources: Resources


def _get(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _same_order(refit: bytes, peer: bytes) -> None:
    """The peer answers the order exactly as ReFit does (its OrderRead: the same fields, the
    same values written the same way); ReFit adds the history, inspection and payout."""
    ours, theirs = json.loads(refit), json.loads(peer)
    fields = list(OrderRead.model_fields)
    if list(theirs) != fields or any(theirs[f] != ours[f] for f in fields):
        differ = sorted(set(fields) ^ set(theirs) | {f for f in theirs if theirs[f] != ours.get(f)})
        raise RuntimeError(f"the Node peer's order differs from ReFit's in: {', '.join(differ)}")


def _pgbench_script(user_id: uuid.UUID, order_id: uuid.UUID, *, one_round_trip: bool) -> str:
    # The peer's statements, with the claims ReFit itself sets (sub and role).
    claims = json.dumps({"sub": str(user_id), "role": "authenticated"})
    statements = [
        "BEGIN",
        "SET LOCAL ROLE authenticated",
        f"SELECT set_config('request.jwt.claims', '{claims}', true)",
        f"SELECT * FROM orders WHERE id = '{order_id}'",
        "COMMIT",
    ]
    return (" \\; ".join(statements) if one_round_trip else ";\n".join(statements)) + ";\n"


async def _visible(conninfo: str, user_id: uuid.UUID, order_id: uuid.UUID) -> bool:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE authenticated")
            claims = json.dumps({"sub": str(user_id), "role": "authenticated"})
            await conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
            cur = await conn.execute("SELECT count(*) FROM orders WHERE id = %s", (order_id,))
            row = await cur.fetchone()
            return bool(row and row[0] == 1)


async def _sessions(conn: psycopg.AsyncConnection) -> int:
    """Sessions PostgreSQL has started on this database so far (PostgreSQL 14+; else 0)."""
    try:
        cur = await conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
    except psycopg.errors.UndefinedColumn:
        return 0
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


async def _one_size(
    setup: Setup,
    conn: psycopg.AsyncConnection,
    size: int,
    *,
    api: str,
    peer: str,
    api_process: subprocess.Popen[bytes],
    peer_process: subprocess.Popen[bytes],
    minting: Settings,
    env: dict[str, str],
    started: list[subprocess.Popen[bytes]],
) -> dict[str, Row]:
    out: dict[str, Row] = {}
    orders = await seed.order_count(conn)
    order_id = await seed.hot_order(conn)
    token = issue_access_token(minting, seed.HOT_SELLER).token
    auth = {"Authorization": f"Bearer {token}"}
    read_url = f"{api}/api/orders/{order_id}"
    bodies = []
    for url in (read_url, f"{peer}/api/orders/{order_id}", f"{api}/api/orders?limit=50"):
        status, body = await asyncio.to_thread(_get, url, token)
        if status != 200:
            raise RuntimeError(f"GET {url} answered {status}: the bench's data is wrong")
        bodies.append(body)
    _same_order(bodies[0], bodies[1])
    if not await _visible(setup.conninfo, seed.HOT_SELLER, order_id):
        raise RuntimeError("the hot order is not visible under its seller's claims")

    async def measure(
        key: str, run: Awaitable[load.Measure], server: subprocess.Popen[bytes] | None = None
    ) -> None:
        _say(f"{size:,} orders: {key}")
        cpu = servers.group_cpu_seconds(server) if server else 0.0
        sessions = await _sessions(conn)
        result = await run
        if server and result.completed:
            cpu = servers.group_cpu_seconds(server) - cpu
            result.cpu_ms = cpu * 1000 / result.completed
        # Connections a server opened during the run: a pool that keeps too few idle
        # connections opens (and PostgreSQL forks) one per request beyond them.
        result.extra["new_connections"] = await _sessions(conn) - sessions
        out[key] = Row(orders, result)
        await asyncio.sleep(1)  # let the machine settle between runs

    for key, one in (("pgbench_5", False), ("pgbench_1", True)):
        script = _pgbench_script(seed.HOT_SELLER, order_id, one_round_trip=one)
        await measure(
            key,
            load.pgbench(setup.conninfo, script, seconds=DURATION, workdir=setup.work / "pgbench"),
        )

    async def closed_loop(key: str, url: str, server: subprocess.Popen[bytes]) -> None:
        await load.wrk(url, seconds=WARMUP_SECONDS, headers=auth)
        await measure(key, load.wrk(url, seconds=DURATION, headers=auth), server)

    await closed_loop("node_read", f"{peer}/api/orders/{order_id}", peer_process)
    await closed_loop("read", read_url, api_process)
    await measure(
        "node_read_rate",
        load.open_loop(f"{peer}/api/orders/{order_id}", rate=RATE, seconds=DURATION, headers=auth),
        peer_process,
    )
    await measure(
        "read_rate",
        load.open_loop(read_url, rate=RATE, seconds=DURATION, headers=auth),
        api_process,
    )
    await closed_loop("list", f"{api}/api/orders?limit=50", api_process)

    spares = await seed.spare_quotes(conn, int(QUOTES_PER_SECOND * DURATION))
    tokens = {u: issue_access_token(minting, u).token for u in {s.user_id for s in spares}}
    lines = setup.work / f"create-{size}.txt"
    lines.write_text("".join(f"{tokens[s.user_id]} {s.quote_id} {s.address_id}\n" for s in spares))
    await measure(
        "create",
        load.wrk(
            f"{api}/api/orders/create",
            seconds=DURATION,
            script=Path(__file__).with_name("create_order.lua"),
            script_args=[str(lines), str(load.THREADS)],
        ),
        api_process,
    )
    await _webhooks(setup, conn, size, api, api_process, env, measure, started)
    await measure(
        "labels",
        labels.run(
            conn,
            setup.resources,
            count=LABEL_ORDERS,
            env=env,
            log=setup.work / "logs" / "worker.log",
            started=started,
        ),
    )
    await measure(
        "streams",
        streams.run(
            conn,
            setup.resources,
            api=api,
            env=env,
            minting=minting,
            log=setup.work / "logs" / "streams-api.log",
            started=started,
        ),
    )
    return out


async def _webhooks(
    setup: Setup,
    conn: psycopg.AsyncConnection,
    size: int,
    api: str,
    api_process: subprocess.Popen[bytes],
    env: dict[str, str],
    measure: Callable[..., Awaitable[None]],
    started: list[subprocess.Popen[bytes]],
) -> None:
    """Signed unique webhooks at the API, the worker beside it (bench/webhooks.py)."""
    log = setup.work / "logs" / "worker.log"
    async with webhooks.worker_beside(conn, env, log, started) as worker:
        run = await webhooks.warmed_run(
            api,
            env,
            setup.work,
            str(size),
            warm_up_seconds=WARMUP_SECONDS,
            seconds=DURATION,
            conn=conn,
            worker=worker,
        )
        await measure("webhooks", run, api_process)
    # What the worker had not handled is dropped: neither its jobs nor the webhook sweep's
    # re-queueing may compete with the label jobs measured next.
    await webhooks.drop_backlog(conn)


async def run(setup: Setup, started: list[subprocess.Popen[bytes]]) -> list[str]:
    """Seed each size, load every server with it, and return the table's lines."""
    secret = secrets.token_urlsafe(32)
    port, peer_port = servers.free_port(), servers.free_port()
    env = servers.refit_env(
        database_url=setup.database_url,
        redis_url=setup.redis_url,
        key_prefix=setup.key_prefix,
        secret=secret,
        data_dir=setup.work / "data",
        port=port,
    )
    # Webhooks are signed as Shippo signs them (bench/webhooks.py).
    env["REFIT_SHIPPO_WEBHOOK_TOKEN"] = secrets.token_urlsafe(24)
    env["REFIT_SHIPPO_WEBHOOK_HMAC_SECRET"] = secrets.token_urlsafe(32)
    minting = Settings(
        _env_file=None,  # type: ignore[call-arg]
        jwt_secret=secret,
        public_url=env["REFIT_PUBLIC_URL"],
        access_token_ttl_seconds=3600,
    )
    logs = setup.work / "logs"
    results: dict[str, dict[int, Row]] = {}
    # Other work on the machine moves every number: say how busy it was.
    load_before = os.getloadavg()[0]
    how = ""
    async with await psycopg.AsyncConnection.connect(setup.conninfo, autocommit=True) as conn:
        have = 0
        for index, size in enumerate(sorted(SIZES)):
            _say(f"seeding {size - have:,} orders")
            took = await seed.grow(conn, have, size) + await seed.tidy(conn)
            _say(f"seeded {size:,} orders in {took:.0f} s")
            have = size
            if index == 0:
                # Started after the first seed: the seed's writes do not compete with startup.
                peer_dir = await asyncio.to_thread(servers.prepare_peer, PEER_HOME)
                api_process, how = await servers.start_api(env, port, logs / "api.log", started)
                _say(f"ReFit API: {how} {servers.API_WORKERS} on port {port}")
                peer_process = await servers.start_peer(
                    peer_dir,
                    database_url=setup.conninfo,
                    secret=secret,
                    port=peer_port,
                    log=logs / "node.log",
                    started=started,
                )
            for key, row in (
                await _one_size(
                    setup,
                    conn,
                    size,
                    api=f"http://127.0.0.1:{port}",
                    peer=f"http://127.0.0.1:{peer_port}",
                    api_process=api_process,
                    peer_process=peer_process,
                    minting=minting,
                    env=env,
                    started=started,
                )
            ).items():
                results.setdefault(key, {})[size] = row
    lines = render(results, sorted(SIZES), rate=RATE, concurrency=labels.CONCURRENCY)
    lines.append("")
    lines += [
        f"wrk -t{load.THREADS} -c{load.CONNECTIONS} -d{DURATION:g}s (after {WARMUP_SECONDS:g} s "
        f"of warm-up); pgbench -c{load.CONNECTIONS} -j{load.THREADS} -T{DURATION:g} -M simple; "
        f"open loop: bench/openloop.py",
        f"ReFit API: {how} {servers.API_WORKERS}; Node peer: WORKERS=2 POOL=10; "
        f"{os.cpu_count()} cores, 1-minute load average {load_before:.1f} before the runs, "
        f"{os.getloadavg()[0]:.1f} after",
        f"server logs in {logs}:",
        *_log_errors(logs),
    ]
    return lines


def _log_errors(logs: Path) -> list[str]:
    """Lines in the servers' logs that say something went wrong under load."""
    out = []
    for log in sorted(logs.glob("*.log")):
        bad = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if any(word in line.lower() for word in ("error", "traceback", "exception"))
        ]
        example = f", e.g. {bad[0][:160]}" if bad else ""
        out.append(f"  {log.name}: {len(bad)} error lines{example}")
    return out
