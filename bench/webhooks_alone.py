"""The webhook intake alone, for quick loops on its cost: `python -m bench.webhooks_alone`
seeds a fresh database (REFIT_BENCH_SIZES' first size, default 10,000 orders), starts the API
and a worker beside it as `make bench` does, and runs `make bench`'s webhook row
(bench/webhooks.py), printing the rate, the API's CPU per answer and the worker's per job.

    REFIT_BENCH_DURATION=8         seconds of each measured run (after 2 s of warm-up)
    REFIT_BENCH_ROUNDS=2           measured runs, each with the API and worker started afresh
    REFIT_BENCH_CODE=/a:/b         run the servers from these source trees in turn (their
                                   PYTHONPATH), round after round: before/after on one machine
                                   state; default the one this runs from
    REFIT_BENCH_SPY=/path/py-spy   also profile the API and the worker of each run: collapsed
                                   stacks under .refit/bench/<db>/profiles

The servers, settings and load are `make bench`'s (bench/service.py), but for the API's pool:
16 connections a process (the wrk connections it serves), as bench/writes.py has it. The
PostgreSQL CPU is that of the backends serving the bench's database (a local server).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from pathlib import Path

import psycopg

from bench import load, quick_loop, seed, servers, webhooks
from bench.service import DURATION, SIZES, WARMUP_SECONDS
from refit import db

ROOT = quick_loop.ROOT
SPY = quick_loop.SPY
ROUNDS = int(os.environ.get("REFIT_BENCH_ROUNDS", "2"))
CODES = [c for c in os.environ.get("REFIT_BENCH_CODE", str(ROOT)).split(":") if c]


async def _backends(conn: psycopg.AsyncConnection) -> dict[int, tuple[str, float]]:
    """Each PostgreSQL backend serving this database (but this one): whose it is (the API's,
    the worker's: their PGAPPNAME) and its CPU seconds so far."""
    cur = await conn.execute(
        "SELECT pid, application_name FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return {pid: (name, _cpu_seconds(pid)) for pid, name in await cur.fetchall()}


def _spent(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        was = before.get(pid, (name, 0.0))[1]
        out[name or "other"] = out.get(name or "other", 0.0) + seconds - was
    return out


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # gone, or PostgreSQL on another host: not counted
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _user_system(process: subprocess.Popen[bytes]) -> tuple[float, float]:
    """(user, system) CPU seconds so far of the process's group: the kernel's share is the
    round trips' (sockets, wake-ups), the user share our Python's."""
    members = servers._group_members(process)
    tick = os.sysconf("SC_CLK_TCK")
    return sum(int(f[11]) for f in members) / tick, sum(int(f[12]) for f in members) / tick


def _spy(pid: int, out: Path, seconds: float, started: list[subprocess.Popen[bytes]]) -> None:
    if SPY:
        out.parent.mkdir(parents=True, exist_ok=True)
        args = [SPY, "record", "--pid", str(pid), "--subprocesses", "--format", "raw"]
        args += ["--duration", str(int(seconds)), "--rate", "200", "--nonblocking"]
        servers.start([*args, "-o", str(out)], dict(os.environ), out.with_suffix(".log"), started)


async def _round(
    conn: psycopg.AsyncConnection,
    env: dict[str, str],
    code: str,
    index: int,
    work: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    env = {**env, "PYTHONPATH": code}
    port = int(env["REFIT_PORT"])
    api, _ = await servers.start_api(
        {**env, "PGAPPNAME": "api"}, port, work / "logs" / f"api-{index}.log", started
    )
    url = f"http://127.0.0.1:{port}"
    try:
        log = work / "logs" / f"worker-{index}.log"
        async with webhooks.worker_beside(
            conn, {**env, "PGAPPNAME": "worker"}, log, started
        ) as worker:
            run = await webhooks.warmed_run(
                url,
                env,
                work,
                str(index),
                warm_up_seconds=WARMUP_SECONDS,
                seconds=DURATION,
                conn=conn,
                worker=worker,
            )
            _spy(api.pid, work / "profiles" / f"api-{index}.txt", DURATION, started)
            _spy(worker.pid, work / "profiles" / f"worker-{index}.txt", DURATION, started)
            load_before = os.getloadavg()[0]
            backends = await _backends(conn)
            cpu = servers.group_cpu_seconds(api)
            split = _user_system(api)
            result = await run
            cpu = servers.group_cpu_seconds(api) - cpu
            user, system = (b - a for a, b in zip(split, _user_system(api), strict=True))
            after = await _backends(conn)
            pg_cpu = _spent(backends, after)
    finally:
        servers.stop(api)
        started.remove(api)
    # Jobs run by a worker's fetch (started and ended in different transactions) and jobs
    # ended beside another's (both in one: the same transaction time).
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE s.at <> e.at), count(*) FILTER (WHERE s.at = e.at) "
        "FROM procrastinate_events s JOIN procrastinate_events e USING (job_id) "
        "WHERE s.type = 'started' AND e.type = 'succeeded'"
    )
    fetched, beside = await cur.fetchone() or (0, 0)
    await webhooks.drop_backlog(conn)
    e = result.extra
    print(
        f"round {index} ({code}): {result.requests_per_second or 0:.0f} accepted/s, "
        f"non-2xx {result.non_2xx}, {cpu * 1000 / max(result.completed, 1):.2f} ms API CPU "
        f"each ({user * 100 / max(user + system, 1e-9):.0f}% user), "
        f"{float(e.get('worker_cpu_ms', 0)):.2f} ms worker CPU per job, "  # type: ignore[arg-type]
        f"PostgreSQL CPU per answer: "
        + ", ".join(f"{k} {v * 1000 / max(result.completed, 1):.2f} ms" for k, v in pg_cpu.items())
        + " "
        f"({e.get('worker_jobs')} jobs, {e.get('handled_in_run')} of {e.get('kept_rows')} "
        f"rows handled; since start {fetched} jobs fetched, {beside} settled beside), "
        f"p50 {result.p50_ms} ms, p99 {result.p99_ms} ms; "
        f"load average {load_before:.1f}",
        flush=True,
    )


async def _run(url: str, work: Path, started: list[subprocess.Popen[bytes]]) -> None:
    port = servers.free_port()
    env = servers.refit_env(
        database_url=url,
        redis_url=os.environ.get("REFIT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        key_prefix=f"bench:{work.name}:",
        secret=secrets.token_urlsafe(32),
        data_dir=work / "data",
        port=port,
    )
    # The database is shared on a busy machine: one connection per wrk connection, no more.
    env.update(REFIT_DB_POOL_SIZE=str(load.CONNECTIONS // 2), REFIT_DB_MAX_OVERFLOW="0")
    env["REFIT_SHIPPO_WEBHOOK_TOKEN"] = secrets.token_urlsafe(24)
    env["REFIT_SHIPPO_WEBHOOK_HMAC_SECRET"] = secrets.token_urlsafe(32)
    async with await psycopg.AsyncConnection.connect(db.libpq_url(url), autocommit=True) as conn:
        await seed.grow(conn, 0, SIZES[0])
        await seed.tidy(conn)
        load.ensure_wrk()
        for index in range(ROUNDS * len(CODES)):
            await _round(conn, env, CODES[index % len(CODES)], index, work, started)
            await asyncio.sleep(1)  # let the machine settle between runs


if __name__ == "__main__":
    quick_loop.main(__doc__, _run)
