"""What a serving command does before it serves: migrate, seed a fresh database, and (in
production) refuse to start without an operator who can sign in."""

from __future__ import annotations

import asyncio

import typer
from uvicorn.config import STARTUP_FAILURE

from refit import migrate
from refit.settings import Settings


def migrate_and_seed(settings: Settings, embedded_database: bool) -> None:
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
