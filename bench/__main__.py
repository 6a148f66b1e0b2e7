"""`make bench`: run every benchmark against a fresh, migrated database.

PostgreSQL and Redis: REFIT_BENCH_DATABASE_URL / REFIT_BENCH_REDIS_URL, else the embedded
servers under ./.refit/bench. The database URL names one that exists (`postgres`, say): the
bench creates a database of its own beside it. Results are printed, never asserted.
Everything started here (API, worker, Node peer, load generators) is stopped at the end, also
on an error, Ctrl-C or SIGTERM, and the bench database is dropped.

    REFIT_BENCH_SIZES=10000        only the small table (default: 10000,1000000)
    REFIT_BENCH_DURATION=8         seconds per measured run
    REFIT_BENCH_RATE=500           the open-loop read's offered rate
    REFIT_BENCH_LABEL_ORDERS=1000  orders whose labels the worker buys, per size
"""

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import foundation, service
from bench.scratch import scratch
from refit import db, embedded, migrate, queue
from refit.logs import configure_logging
from refit.resources import close_resources, open_resources
from refit.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = [foundation]


async def main() -> None:
    # SIGTERM ends the run the way Ctrl-C does: the finally blocks below stop and drop.
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM,
        asyncio.current_task().cancel,  # type: ignore[union-attr]
    )
    began = time.monotonic()
    servers = embedded.ensure_servers(
        os.environ.get("REFIT_BENCH_DATABASE_URL"),
        os.environ.get("REFIT_BENCH_REDIS_URL"),
        ROOT / ".refit" / "bench",
    )
    assert servers.database_url and servers.redis_url
    fresh = scratch(servers.database_url)
    name, url = fresh.name, fresh.url
    work = ROOT / ".refit" / "bench" / name
    started: list[subprocess.Popen[bytes]] = []
    await fresh.create()
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            env="test",
            database_url=url,
            redis_url=servers.redis_url,
            redis_key_prefix=f"bench:{name}:",
            db_pool_size=50,
            db_max_overflow=0,
            worker_concurrency=10,
        )
        configure_logging(settings.model_copy(update={"log_level": "WARNING"}))
        resources = await open_resources(settings)
        handle = await queue.open_queue(url, max_size=12)
        try:
            for module in BENCHMARKS:
                for line in await module.run(resources):
                    print(line, flush=True)
            # The foundation's 50 connections go back to PostgreSQL before the servers
            # under test need theirs (max_connections is 100 by default).
            await resources.engine.dispose()
            print(flush=True)
            setup = service.Setup(
                database_url=url,
                conninfo=db.libpq_url(url),
                redis_url=servers.redis_url,
                key_prefix=f"bench:{name}:",
                work=work,
                resources=resources,
            )
            for line in await service.run(setup, started):
                print(line, flush=True)
        finally:
            service.servers.stop_all(started)
            async for key in resources.redis.scan_iter(match=f"bench:{name}:*"):
                await resources.redis.delete(key)
            await queue.close_queue(handle)
            await close_resources(resources)
    finally:
        service.servers.stop_all(started)
        await fresh.drop()
        servers.stop()
        # Keep the servers' logs; the rest (label PDFs, pgbench logs, token files) goes.
        for path in work.iterdir() if work.is_dir() else []:
            if path.name != "logs":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        print(f"bench: done in {time.monotonic() - began:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    # Settings come from the environment only; any argument asks what they are (a run starts
    # servers and takes minutes: never by accident).
    if len(sys.argv) > 1:
        print(__doc__)
        sys.exit(0 if sys.argv[1] in ("-h", "--help") else 2)
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        sys.exit(130)
