"""`make bench`: run every benchmark against a fresh, migrated database.

PostgreSQL and Redis: REFIT_BENCH_DATABASE_URL / REFIT_BENCH_REDIS_URL, else the embedded
servers under ./.refit/bench. Results are printed, never asserted.
"""

import asyncio
import os
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from bench import foundation
from refit import db, embedded, migrate, queue
from refit.logs import configure_logging
from refit.resources import close_resources, open_resources
from refit.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = [foundation]


async def main() -> None:
    servers = embedded.ensure_servers(
        os.environ.get("REFIT_BENCH_DATABASE_URL"),
        os.environ.get("REFIT_BENCH_REDIS_URL"),
        ROOT / ".refit" / "bench",
    )
    assert servers.database_url and servers.redis_url
    admin = db.libpq_url(db.sqlalchemy_url(servers.database_url))
    name = f"refit_bench_{uuid.uuid4().hex[:8]}"
    url = (
        make_url(db.sqlalchemy_url(servers.database_url))
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
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
                    print(line)
        finally:
            await queue.close_queue(handle)
            await close_resources(resources)
    finally:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        servers.stop()


if __name__ == "__main__":
    asyncio.run(main())
