"""The writes alone, for quick loops on their cost: `python -m bench.writes` seeds a fresh
database (REFIT_BENCH_SIZES' first size, default 10,000 orders), starts the API as `make
bench` does, and runs `make bench`'s create-order and label-job scenarios, printing for
each the rate and the CPU time of the server's own processes per request (or label).

    REFIT_BENCH_DURATION=5         seconds of the create run (after 2 s of warm-up)
    REFIT_BENCH_LABEL_ORDERS=1000  orders whose labels the worker buys
    REFIT_BENCH_SPY=/path/py-spy   also profile the API (create) and the worker (labels):
                                   collapsed stacks under .refit/bench/<db>/profiles
    REFIT_BENCH_SPY_RATE=200       py-spy's samples a second

The servers, database and settings are `make bench`'s (bench/__main__.py, bench/service.py);
nothing here is a different measurement, only fewer of them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from pathlib import Path

import psycopg

from bench import labels, load, quick_loop, seed, servers
from bench.service import DURATION, LABEL_ORDERS, QUOTES_PER_SECOND, SIZES, WARMUP_SECONDS
from refit import db, queue
from refit.auth.tokens import issue_access_token
from refit.logs import configure_logging
from refit.resources import close_resources, open_resources
from refit.settings import Settings

ROOT = quick_loop.ROOT
SPY = quick_loop.SPY
SPY_RATE = os.environ.get("REFIT_BENCH_SPY_RATE", "200")  # samples a second


def _spy(pid: int, out: Path, seconds: float, started: list[subprocess.Popen[bytes]]) -> None:
    if SPY:
        out.parent.mkdir(parents=True, exist_ok=True)
        args = [SPY, "record", "--pid", str(pid), "--subprocesses", "--format", "raw"]
        args += ["--duration", str(int(seconds)), "--rate", SPY_RATE, "--nonblocking"]
        servers.start([*args, "-o", str(out)], dict(os.environ), out.with_suffix(".log"), started)


async def _spy_worker(started: list[subprocess.Popen[bytes]], out: Path) -> None:
    # labels.run starts the worker itself: profile it from the moment it is in `started`.
    known = set(map(id, started))
    while True:
        for process in started:
            if id(process) not in known and "worker" in " ".join(map(str, process.args)):
                _spy(process.pid, out, 60, started)
                return
        await asyncio.sleep(0.05)


async def _run(url: str, work: Path, started: list[subprocess.Popen[bytes]]) -> None:
    secret = secrets.token_urlsafe(32)
    port = servers.free_port()
    redis_url = os.environ.get("REFIT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench:{work.name}:"
    env = servers.refit_env(
        database_url=url,
        redis_url=redis_url,
        key_prefix=prefix,
        secret=secret,
        data_dir=work / "data",
        port=port,
    )
    # The database is shared on a busy machine: one connection per wrk connection, no more.
    env.update(REFIT_DB_POOL_SIZE=str(load.CONNECTIONS // 2), REFIT_DB_MAX_OVERFLOW="0")
    minting = Settings(
        _env_file=None,  # type: ignore[call-arg]
        jwt_secret=secret,
        public_url=env["REFIT_PUBLIC_URL"],
        access_token_ttl_seconds=3600,
    )
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env="test",
        database_url=url,
        redis_url=redis_url,
        redis_key_prefix=prefix,
        db_pool_size=2,
        db_max_overflow=0,
    )
    configure_logging(settings.model_copy(update={"log_level": "WARNING"}))
    resources = await open_resources(settings)
    handle = await queue.open_queue(url, max_size=4)
    try:
        async with await psycopg.AsyncConnection.connect(
            db.libpq_url(url), autocommit=True
        ) as conn:
            await seed.grow(conn, 0, SIZES[0])
            await seed.tidy(conn)
            api, _ = await servers.start_api(env, port, work / "logs" / "api.log", started)
            spares = await seed.spare_quotes(
                conn, int(QUOTES_PER_SECOND * (DURATION + WARMUP_SECONDS))
            )
            tokens = {u: issue_access_token(minting, u).token for u in {s.user_id for s in spares}}
            # The warm-up has quotes of its own: the measured run's are all fresh.
            warm = int(QUOTES_PER_SECOND * WARMUP_SECONDS)
            files = {"warm": spares[:warm], "create": spares[warm:]}
            for name, some in files.items():
                (work / f"{name}.txt").write_text(
                    "".join(f"{tokens[s.user_id]} {s.quote_id} {s.address_id}\n" for s in some)
                )
            create = f"http://127.0.0.1:{port}/api/orders/create"
            script = Path(__file__).with_name("create_order.lua")
            await load.wrk(
                create,
                seconds=WARMUP_SECONDS,
                script=script,
                script_args=[str(work / "warm.txt"), str(load.THREADS)],
            )
            _spy(api.pid, work / "profiles" / "api.txt", DURATION, started)
            load_before = os.getloadavg()[0]
            cpu = servers.group_cpu_seconds(api)
            result = await load.wrk(
                create,
                seconds=DURATION,
                script=script,
                script_args=[str(work / "create.txt"), str(load.THREADS)],
            )
            cpu = servers.group_cpu_seconds(api) - cpu
            print(
                f"create: {result.requests_per_second:.0f}/s, {cpu * 1000 / result.completed:.2f} "
                f"ms API CPU each, p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, {result.extra}; "
                f"load average {load_before:.1f}",
                flush=True,
            )
            spy = asyncio.create_task(_spy_worker(started, work / "profiles" / "worker.txt"))
            measure = await labels.run(
                conn,
                resources,
                count=LABEL_ORDERS,
                env=env,
                log=work / "logs" / "worker.log",
                started=started,
            )
            spy.cancel()
            print(
                f"labels: {measure.requests_per_second:.0f}/s, {measure.cpu_ms or 0:.2f} ms "
                f"worker CPU each, {measure.extra}; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        await queue.close_queue(handle)
        async for key in resources.redis.scan_iter(match=f"{prefix}*"):
            await resources.redis.delete(key)
        await close_resources(resources)


if __name__ == "__main__":
    quick_loop.main(__doc__, _run)
