"""What the quick loops over one scenario share (`python -m bench.writes`,
`python -m bench.webhooks_alone`): `make bench`'s servers (or the embedded ones), a scratch
database migrated for the run and dropped after it, the servers and py-spy stopped, and only
the logs and profiles kept under .refit/bench/<db>."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import servers
from bench.scratch import scratch
from refit import embedded, migrate

ROOT = Path(__file__).resolve().parent.parent
SPY = os.environ.get("REFIT_BENCH_SPY")

Run = Callable[[str, Path, list[subprocess.Popen[bytes]]], Awaitable[None]]


async def in_scratch_database(run: Run) -> None:
    """`run(database_url, work_dir, started)` on a fresh migrated database."""
    found = embedded.ensure_servers(
        os.environ.get("REFIT_BENCH_DATABASE_URL"),
        os.environ.get("REFIT_BENCH_REDIS_URL"),
        ROOT / ".refit" / "bench",
    )
    assert found.database_url
    fresh = scratch(found.database_url)
    work = ROOT / ".refit" / "bench" / fresh.name
    started: list[subprocess.Popen[bytes]] = []
    await fresh.create()
    try:
        await asyncio.to_thread(migrate.upgrade, fresh.url)
        await run(fresh.url, work, started)
    finally:
        # py-spy writes its profile when its own duration ends: wait for those.
        for process in [p for p in started if p.args and str(p.args[0]) == SPY]:
            process.wait(90)
        servers.stop_all(started)
        await fresh.drop()
        found.stop()
        for path in work.iterdir() if work.is_dir() else []:
            if path.name not in ("logs", "profiles"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def main(doc: str | None, run: Run) -> None:
    if len(sys.argv) > 1:
        print(doc)
        sys.exit(0 if sys.argv[1] in ("-h", "--help") else 2)
    asyncio.run(in_scratch_database(run))
