"""The seller's hot reads, CPU per request, ReFit beside the Node peer, in one short run.

    PYTHONPATH=$PWD .venv/bin/python -m bench.read_cost [--code DIR] [--duration 5]
        [--size 10000] [--only read,list,catalog,flags] [--spy PY-SPY --spy-out FILE]

A fresh database (migrated with the code under test, seeded by bench/seed.py), `refit api
--workers 2` and the Node peer (WORKERS=2) as `make bench` starts them, each route driven
by wrk (2 s of warm-up, then `--duration` s measured), and for each the CPU time (user +
system, /proc) of the server's own process group divided by the requests it answered: the
number that holds while other work shares the cores. Quicker than `make bench` (about a
minute), for loops over one change; `make bench` stays the record.

`--code DIR`: serve (and migrate with) the `refit` package of another checkout, e.g. a `git
archive` of an older commit, so a regression can be bisected with this file as it is now.
`--spy`: py-spy records one API process during the read's run (raw collapsed stacks to
`--spy-out`); `--spy-route list` records the list's run instead.

PostgreSQL and Redis: REFIT_BENCH_DATABASE_URL / REFIT_BENCH_REDIS_URL (a database that
exists, `postgres`: the run creates its own beside it and drops it at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from bench import load, seed, servers
from refit import db
from refit.auth.tokens import issue_access_token
from refit.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PEER_HOME = ROOT / ".refit" / "bench"
WARMUP_SECONDS = 2.0


def _say(message: str) -> None:
    print(f"read_cost: {message}", file=sys.stderr, flush=True)


def _migrate(code: Path, url: str) -> None:
    subprocess.run(
        [sys.executable, "-c", f"from refit import migrate; migrate.upgrade({url!r})"],
        env={**os.environ, "PYTHONPATH": str(code)},
        cwd=code,
        check=True,
        capture_output=True,
    )


def _api_pid(api: subprocess.Popen[bytes]) -> int:
    """One of uvicorn's worker processes (a child of the supervisor)."""
    children = Path(f"/proc/{api.pid}/task/{api.pid}/children").read_text().split()
    return int(children[0])


async def _measure(
    url: str, token: str | None, server: subprocess.Popen[bytes], seconds: float
) -> tuple[float, float, int]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    await load.wrk(url, seconds=WARMUP_SECONDS, headers=headers)
    cpu = servers.group_cpu_seconds(server)
    result = await load.wrk(url, seconds=seconds, headers=headers)
    cpu = servers.group_cpu_seconds(server) - cpu
    if result.non_2xx:
        raise RuntimeError(f"{url}: {result.non_2xx} answers were not 2xx")
    return result.requests_per_second, cpu * 1000 / max(1, result.completed), result.completed


async def main(args: argparse.Namespace) -> None:
    code: Path = args.code
    admin = db.libpq_url(
        db.sqlalchemy_url(
            os.environ.get(
                "REFIT_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
            )
        )
    )
    name = f"refit_readcost_{uuid.uuid4().hex[:8]}"
    sa_url = (
        make_url(db.sqlalchemy_url(admin)).set(database=name).render_as_string(hide_password=False)
    )
    work = PEER_HOME / name
    started: list[subprocess.Popen[bytes]] = []
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        await _run(args, code, sa_url, work, started)
    except BaseException:
        _say(f"failed; the servers' logs are in {work / 'logs'}")
        raise
    finally:
        servers.stop_all(started)
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    # The servers' logs are kept only when the run failed (said above).
    shutil.rmtree(work, ignore_errors=True)


async def _run(
    args: argparse.Namespace,
    code: Path,
    sa_url: str,
    work: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    conninfo = db.libpq_url(sa_url)
    await asyncio.to_thread(_migrate, code, sa_url)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await seed.grow(conn, 0, args.size)
        await seed.tidy(conn)
        order_id = await seed.hot_order(conn)
    secret = secrets.token_urlsafe(32)
    port, peer_port = servers.free_port(), servers.free_port()
    env = servers.refit_env(
        database_url=sa_url,
        redis_url=os.environ.get("REFIT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        key_prefix=f"readcost:{work.name}:",
        secret=secret,
        data_dir=work / "data",
        port=port,
    )
    env["PYTHONPATH"] = str(code)
    api_process, _ = await servers.start_api(env, port, work / "logs" / "api.log", started)
    peer_dir = await asyncio.to_thread(servers.prepare_peer, PEER_HOME)
    peer_process = await servers.start_peer(
        peer_dir,
        database_url=conninfo,
        secret=secret,
        port=peer_port,
        log=work / "logs" / "node.log",
        started=started,
    )
    minting = Settings(
        _env_file=None,  # type: ignore[call-arg]
        jwt_secret=secret,
        public_url=env["REFIT_PUBLIC_URL"],
        access_token_ttl_seconds=3600,
    )
    token = issue_access_token(minting, seed.HOT_SELLER).token
    api = f"http://127.0.0.1:{port}"
    routes = {
        "node read": (f"http://127.0.0.1:{peer_port}/api/orders/{order_id}", peer_process),
        "read": (f"{api}/api/orders/{order_id}", api_process),
        "list": (f"{api}/api/orders?limit=50", api_process),
        "catalog": (f"{api}/api/catalog", api_process),
        "flags": (f"{api}/api/flags", api_process),
    }
    rows = []
    for key in ["node read", *(r for r in args.only.split(",") if r)]:
        target, server = routes[key]
        spy = _spy(args, api_process) if args.spy and key == args.spy_route else None
        _say(f"{key}: {target}")
        rps, cpu_ms, done = await _measure(target, token, server, args.duration)
        if spy is not None:
            await asyncio.to_thread(spy.wait, 30)
        rows.append((key, rps, cpu_ms, done))
        await asyncio.sleep(1)
    node_cpu = rows[0][2]
    print(f"{'route':<10} {'req/s':>8} {'CPU ms':>7} {'x Node CPU':>10} {'requests':>9}")
    for key, rps, cpu_ms, done in rows:
        print(f"{key:<10} {rps:>8,.0f} {cpu_ms:>7.3f} {cpu_ms / node_cpu:>10.2f} {done:>9,}")
    print(f"code: {code}; 1-minute load average after: {os.getloadavg()[0]:.1f}")


def _spy(args: argparse.Namespace, api: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """py-spy recording one API process through the warm-up and the measured run."""
    return subprocess.Popen(
        [
            args.spy,
            "record",
            "-p",
            str(_api_pid(api)),
            "-d",
            str(int(args.duration + WARMUP_SECONDS)),
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            args.spy_out,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=lambda p: Path(p).resolve(), default=ROOT)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--only", default="read,list,catalog,flags")
    parser.add_argument("--spy", default="")
    parser.add_argument("--spy-out", default="/tmp/read_cost.spy.txt")
    parser.add_argument("--spy-route", default="read")
    asyncio.run(main(parser.parse_args()))
