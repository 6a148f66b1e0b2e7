"""The seller's hot reads, CPU per request, ReFit beside the Node peer, in one short run.

    PYTHONPATH=$PWD .venv/bin/python -m bench.read_cost [--duration 5] [--rounds 1]
        [--only read,list,catalog,flags] [--api LABEL=DIR[,REFIT_X=V...]]...
        [--spy /path/to/py-spy --spy-out FILE --spy-route read] [--open-loop RATE]

A fresh database (migrated by the first API's code, seeded by bench/seed.py), the Node peer
(WORKERS=2) and each API as `make bench` starts it (`refit api --workers 2`); each route
driven by wrk (2 s of warm-up, then `--duration` s measured), and for each the CPU time
(user + system, /proc) of the server's own process group divided by the requests it
answered: the number that holds while other work shares the cores; beside it, what
PostgreSQL (the postmaster and its backends) and Redis spent a request in the same window,
which other work on them would count too. About a minute; for
loops over one change (`make bench` stays the record).

`--api` (repeatable; default: this checkout): serve the `refit` package of another checkout
(a `git archive` of an older commit, to bisect a regression with this file as it is now),
or this one with other settings, beside the others in the same run: `--rounds` alternates
them with the peer, and the medians are compared, so the machine's other load falls on all.
`--open-loop RATE`: each route offered RATE requests/s by bench/openloop.py (as `make
bench`'s open-loop rows) instead of wrk's closed loop: the table gives p50 and p99 too, for
loops over what a request's tail costs.
`--spy`: py-spy records one process of the first API during its `--spy-route` run (raw
collapsed stacks to `--spy-out`).

PostgreSQL and Redis: REFIT_BENCH_DATABASE_URL / REFIT_BENCH_REDIS_URL (a database that
exists, `postgres`: the run creates its own beside it and drops it at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis.asyncio as redis

from bench import load, seed, servers
from bench.scratch import scratch
from refit import db
from refit.auth.tokens import issue_access_token
from refit.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PEER_HOME = ROOT / ".refit" / "bench"
WARMUP_SECONDS = 2.0
ROUTES = {
    "read": "/api/orders/{order_id}",
    "list": "/api/orders?limit=50",
    "catalog": "/api/catalog",
    "flags": "/api/flags",
}


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
    """One of the API processes: a child of `refit api --workers N` spawned by
    multiprocessing (`spawn_main` on its command line), not multiprocessing's resource
    tracker."""
    for child in Path(f"/proc/{api.pid}/task/{api.pid}/children").read_text().split():
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    raise RuntimeError("no API worker process found")


@dataclass(frozen=True)
class Shared:
    """The pids of the servers every process under test shares: their CPU is part of a
    request's cost too (the peer asks PostgreSQL five statements a read, ReFit one and Redis)."""

    postgres: int
    redis: int

    def cpu(self) -> tuple[float, float]:
        return servers.tree_cpu_seconds(self.postgres), servers.tree_cpu_seconds(self.redis)


@dataclass(frozen=True)
class Cost:
    rps: float
    cpu_ms: float  # the server's own processes, a request
    postgres_ms: float
    redis_ms: float
    p50_ms: float | None = None
    p99_ms: float | None = None


async def _measure(
    url: str,
    token: str | None,
    server: subprocess.Popen[bytes],
    seconds: float,
    shared: Shared,
    open_loop_rate: float | None = None,
) -> Cost:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    await load.wrk(url, seconds=WARMUP_SECONDS, headers=headers)
    for attempt in (1, 2, 3):
        cpu, (pg, rd) = servers.group_cpu_seconds(server), shared.cpu()
        if open_loop_rate:
            result = await load.open_loop(
                url, rate=open_loop_rate, seconds=seconds, headers=headers
            )
        else:
            result = await load.wrk(url, seconds=seconds, headers=headers)
        cpu = servers.group_cpu_seconds(server) - cpu
        pg_after, rd_after = shared.cpu()
        if not result.non_2xx:
            n = max(1, result.completed)
            return Cost(
                result.requests_per_second,
                cpu * 1000 / n,
                (pg_after - pg) * 1000 / n,
                (rd_after - rd) * 1000 / n,
                result.p50_ms,
                result.p99_ms,
            )
        # On a shared machine, PostgreSQL's connections can run out under others' work
        # (503s): measured again, and said so.
        _say(f"{url}: {result.non_2xx} answers were not 2xx (attempt {attempt}); again")
    raise RuntimeError(f"{url}: answers that were not 2xx in every attempt")


async def _shared_servers(conninfo: str, redis_url: str) -> Shared:
    """PostgreSQL's postmaster (from its data directory's postmaster.pid: the bench runs on
    this machine) and Redis's process, as they report themselves."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        row = await (await conn.execute("SHOW data_directory")).fetchone()
    assert row is not None
    postmaster = int((Path(row[0]) / "postmaster.pid").read_text().split()[0])
    client = redis.from_url(redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return Shared(postmaster, int(info["process_id"]))


async def main(args: argparse.Namespace) -> None:
    fresh = scratch(
        os.environ.get("REFIT_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        prefix="refit_readcost",
    )
    work = PEER_HOME / fresh.name
    started: list[subprocess.Popen[bytes]] = []
    await fresh.create()
    try:
        await _run(args, fresh.url, work, started)
    except BaseException:
        _say(f"failed; the servers' logs are in {work / 'logs'}")
        raise
    finally:
        servers.stop_all(started)
        await fresh.drop()
    # The servers' logs are kept only when the run failed (said above).
    shutil.rmtree(work, ignore_errors=True)


@dataclass
class Api:
    """One ReFit API under test: a label, the checkout whose `refit` it serves, and
    REFIT_* settings of its own (a variant to compare in the same run)."""

    label: str
    code: Path
    env: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Api:
        """LABEL=DIR[,NAME=VALUE...]"""
        label, _, rest = text.partition("=")
        code, *pairs = rest.split(",")
        return cls(label, Path(code).resolve(), dict(p.split("=", 1) for p in pairs))


async def _run(
    args: argparse.Namespace,
    sa_url: str,
    work: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    apis: list[Api] = args.api or [Api("refit", ROOT, {})]
    conninfo = db.libpq_url(sa_url)
    await asyncio.to_thread(_migrate, apis[0].code, sa_url)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await seed.grow(conn, 0, args.size)
        await seed.tidy(conn)
        order_id = await seed.hot_order(conn)
    secret = secrets.token_urlsafe(32)
    redis_url = os.environ.get("REFIT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    targets: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    public_url = ""
    for api in apis:
        port = servers.free_port()
        env = servers.refit_env(
            database_url=sa_url,
            redis_url=redis_url,
            key_prefix=f"readcost:{work.name}:",
            secret=secret,
            data_dir=work / "data",
            port=port,
        )
        # Every API mints and checks the same tokens (one issuer).
        public_url = public_url or env["REFIT_PUBLIC_URL"]
        env.update(
            REFIT_PUBLIC_URL=public_url,
            PYTHONPATH=str(api.code),
            # The peer's pool (POOL=10 a process), and no overflow: several servers share a
            # PostgreSQL of 100 connections (with other work's on a shared machine).
            REFIT_DB_POOL_SIZE="10",
            REFIT_DB_MAX_OVERFLOW="0",
            **api.env,
        )
        process, _ = await servers.start_api(
            env, port, work / "logs" / f"api-{api.label}.log", started
        )
        base = f"http://127.0.0.1:{port}"
        for route, path in ROUTES.items():
            targets[f"{api.label} {route}"] = (base + path.format(order_id=order_id), process)
    peer_dir = await asyncio.to_thread(servers.prepare_peer, PEER_HOME)
    peer_port = servers.free_port()
    peer_process = await servers.start_peer(
        peer_dir,
        database_url=conninfo,
        secret=secret,
        port=peer_port,
        log=work / "logs" / "node.log",
        started=started,
    )
    targets["node read"] = (f"http://127.0.0.1:{peer_port}/api/orders/{order_id}", peer_process)
    minting = Settings(
        _env_file=None,  # type: ignore[call-arg]
        jwt_secret=secret,
        public_url=public_url,
        access_token_ttl_seconds=3600,
    )
    token = issue_access_token(minting, seed.HOT_SELLER).token
    shared = await _shared_servers(conninfo, redis_url)
    keys = ["node read"]
    keys += [f"{a.label} {r}" for r in args.only.split(",") if r for a in apis]
    results: dict[str, list[Cost]] = {k: [] for k in keys}
    for round_ in range(args.rounds):
        for key in keys:
            target, server = targets[key]
            spy = None
            if args.spy and round_ == 0 and key == f"{apis[0].label} {args.spy_route}":
                spy = _spy(args, server)
            _say(f"round {round_ + 1}: {key}")
            results[key].append(
                await _measure(target, token, server, args.duration, shared, args.open_loop)
            )
            if spy is not None:
                await asyncio.to_thread(spy.wait, 30)
            await asyncio.sleep(1)
    node_cpu = statistics.median(c.cpu_ms for c in results["node read"])
    print(
        f"{'server route':<16} {'req/s':>8} {'CPU ms':>7} {'x Node':>7} {'PG ms':>6} "
        f"{'Redis':>6} {'all ms':>7}  CPU ms each round"
        + ("  p50/p99 ms each round" if args.open_loop else "")
    )
    for key, runs in results.items():
        rps = statistics.median(c.rps for c in runs)
        cpu = statistics.median(c.cpu_ms for c in runs)
        pg = statistics.median(c.postgres_ms for c in runs)
        rd = statistics.median(c.redis_ms for c in runs)
        each = " ".join(f"{c.cpu_ms:.3f}" for c in runs)
        if args.open_loop:
            each += "  " + " ".join(f"{c.p50_ms:.1f}/{c.p99_ms:.1f}" for c in runs)
        print(
            f"{key:<16} {rps:>8,.0f} {cpu:>7.3f} {cpu / node_cpu:>7.2f} {pg:>6.3f} {rd:>6.3f} "
            f"{cpu + pg + rd:>7.3f}  {each}"
        )
    print(f"1-minute load average after: {os.getloadavg()[0]:.1f}")


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
            "--gil",  # samples of the thread running Python only: CPU, not waits
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
    parser.add_argument("--api", type=Api.parse, action="append")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--only", default="read,list,catalog,flags")
    parser.add_argument("--open-loop", type=float, default=None)
    parser.add_argument("--spy", default="")
    parser.add_argument("--spy-out", default="/tmp/read_cost.spy.txt")
    parser.add_argument("--spy-route", default="read")
    asyncio.run(main(parser.parse_args()))
