"""What a serving command does before it serves: migrate, seed a fresh database, (in
production) refuse to start without an operator who can sign in, and, under `refit run`, wait
for the parent to have done so."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from refit.cli_failures import EXIT_CANNOT_RUN
from refit.settings import Settings

# The exit status of a server that could not start (its settings refused, its lifespan failed,
# its port taken): the command line's for any command that could not do its work.
STARTUP_FAILURE = EXIT_CANNOT_RUN


def migrate_and_seed(settings: Settings, embedded_database: bool) -> None:
    # Imported here: `refit run` starts its children before it loads Alembic and SQLAlchemy.
    from refit import migrate
    from refit.admin import cli as operator_cli
    from refit.catalog.cli import seed_if_empty as seed_catalog_if_empty

    assert settings.database_url
    migrate.upgrade(settings.database_url)
    # A fresh database gets the shipped device catalog (an existing one is kept).
    asyncio.run(seed_catalog_if_empty(settings.database_url))
    if embedded_database and settings.env == "development":
        # ... and an operator to sign in with (REFIT_ADMIN_PASSWORD), while it has none.
        asyncio.run(operator_cli.create_first_admin(settings.database_url, settings.admin_password))


def refuse_production_without_admin(settings: Settings) -> None:
    from refit.admin import cli as operator_cli

    if settings.is_production:
        assert settings.database_url
        if not asyncio.run(operator_cli.has_enabled_admin(settings.database_url)):
            typer.echo(operator_cli.NO_ADMIN, err=True)
            raise typer.Exit(STARTUP_FAILURE)


# `refit run` starts its children while it migrates: each imports its code (seconds of CPU),
# then waits here until the parent has migrated and creates this file. Not a setting: set by
# `refit run` for its own children only.
START_GATE_VARIABLE = "_REFIT_START_GATE"


def wait_for_start_gate() -> None:
    """Return once the database is ready for this process (at once outside `refit run`, or
    for a child started again later). A parent that fails to migrate stops its children; one
    that dies takes them with it (refit.parent_death)."""
    gate = os.environ.get(START_GATE_VARIABLE)
    if not gate:
        return
    while not os.path.exists(gate):
        time.sleep(0.02)


@contextmanager
def start_gate(directory: Path) -> Iterator[Path]:
    """A gate file for this run's children, removed when the run ends."""
    directory.mkdir(parents=True, exist_ok=True)
    gate = directory / f"run-{os.getpid()}.started"
    gate.unlink(missing_ok=True)
    try:
        yield gate
    finally:
        gate.unlink(missing_ok=True)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Loading a server's code allocates a few million objects that live as long as the
    process; the cyclic collector's passes over them, while they are created, were a fifth of
    the start (0.6 of 3.7 s of CPU for the API). Paused while the code loads, then frozen
    (gc.freeze): later collections, on the request path too, no longer walk them."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
