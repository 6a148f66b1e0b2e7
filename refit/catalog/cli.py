"""`refit catalog ...`: load the device catalog from a file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from refit import embedded
from refit.catalog import service
from refit.catalog.schemas import CatalogFile
from refit.resources import close_resources, open_resources
from refit.settings import Settings
from refit.transactions import command_transaction, service_transaction

app = typer.Typer(help="The device catalog.", no_args_is_help=True)


@app.command("load")
def load_command(
    file: Path = typer.Argument(
        service.SHIPPED_CATALOG, help="A catalog JSON file (default: the one shipped)"
    ),
) -> None:
    """Load FILE into the catalog: every entry inserted or updated, entries it no longer lists
    deactivated (existing quotes keep them). Safe to run again."""
    try:
        catalog = service.parse_file(file)
    except service.CatalogFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    settings, servers = embedded.settings_with_servers()
    try:
        result = asyncio.run(load_and_invalidate(settings, catalog))
    finally:
        servers.stop()
    typer.echo(
        f"catalog loaded: {result.models} models, {result.variants} storage options, "
        f"{result.grades} grades; deactivated {result.deactivated_models} models, "
        f"{result.deactivated_variants} storage options, {result.deactivated_grades} grades"
    )


async def load_and_invalidate(settings: Settings, catalog: CatalogFile) -> service.LoadResult:
    """Load in one transaction, then drop the cached GET /api/catalog answer."""
    resources = await open_resources(settings)
    try:
        async with service_transaction(sessionmaker=resources.sessionmaker) as session:
            result = await service.load(session, catalog)
        await service.invalidate(resources)
        return result
    finally:
        await close_resources(resources)


async def seed_if_empty(database_url: str) -> service.LoadResult | None:
    """Load the shipped catalog into a database that has none (`refit run`, test template).
    A catalog already there is left alone: it may hold an operator's newer prices."""

    async def seed(session: AsyncSession) -> service.LoadResult | None:
        if not await service.is_empty(session):
            return None
        return await service.load(session, service.parse_file(service.SHIPPED_CATALOG))

    return await command_transaction(database_url, seed)
