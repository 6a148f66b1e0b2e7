"""`refit flags list|set|off`: the flags on the service's database, as admins see them in
/api/admin/flags. Changes are audited as `cli:<login name>` and reach every API process
through the same notification as an admin's."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from refit import embedded
from refit.errors import ProblemError
from refit.flags import service
from refit.flags.schemas import FlagChange, FlagRead, VariantSpec
from refit.models.flag import FlagMode
from refit.transactions import command_transaction

app = typer.Typer(help="Feature flags (who sees what).", no_args_is_help=True)

T = TypeVar("T")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (a container without /etc/passwd entry)
        return "cli:unknown"


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """`work` in one transaction on the service's database (the embedded one when none is
    configured); a refusal is the command's error message and exit status 1."""
    settings, servers = embedded.settings_with_servers()
    try:
        assert settings.database_url
        return asyncio.run(command_transaction(settings.database_url, work))
    except ProblemError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from exc
    finally:
        servers.stop()


def describe(flag: FlagRead) -> str:
    """One line: name, what it is, its variants and their exposures."""
    if flag.mode is FlagMode.PERCENT:
        state = f"{flag.percent}%"
    elif flag.mode is FlagMode.WALLETS:
        state = f"wallets ({len(flag.wallets)})"
    else:
        state = str(flag.mode)
    line = f"{flag.name}\t{state}"
    if flag.variants:
        line += "\t" + " ".join(
            f"{v.name}={v.weight} ({flag.exposures.get(v.name, 0)} exposures)"
            for v in flag.variants
        )
    return line


def _variants(specs: list[str]) -> list[VariantSpec] | None:
    if not specs:
        return None
    variants = []
    for spec in specs:
        name, _, weight = spec.partition("=")
        try:
            variants.append(VariantSpec(name=name, weight=int(weight or 1)))
        except ValueError as exc:
            typer.echo(f"--variant {spec!r}: NAME or NAME=WEIGHT (a whole number 1+)", err=True)
            raise typer.Exit(2) from exc
    return variants


@app.command("list")
def list_command() -> None:
    """Every flag: on, off, percent or wallets, and its variants with their exposures."""
    flags = _run(service.list_flags)
    if not flags:
        # On stderr: a script reading the list on stdout finds it empty, as it is.
        typer.echo(
            "no flags yet: `refit flags set NAME --on` (or --percent N, or --wallet ADDRESS)",
            err=True,
        )
    for flag in flags:
        typer.echo(describe(flag))


@app.command("set")
def set_command(
    name: str = typer.Argument(..., help="The flag (created if new): a-z, 0-9, . _ -"),
    on: bool = typer.Option(False, "--on", help="On for everyone"),
    percent: int | None = typer.Option(
        None, "--percent", min=0, max=100, help="On for this percentage of wallets (stable)"
    ),
    wallets: list[str] = typer.Option([], "--wallet", help="On for this wallet (repeatable)"),
    variants: list[str] = typer.Option(
        [], "--variant", help="NAME or NAME=WEIGHT (repeatable): replaces the variants"
    ),
    description: str | None = typer.Option(None, "--description"),
) -> None:
    """Turn a flag on: for everyone (--on), a percentage of wallets, or listed wallets."""
    if sum([on, percent is not None, bool(wallets)]) != 1:
        typer.echo("Give exactly one of --on, --percent N, --wallet ADDRESS...", err=True)
        raise typer.Exit(2)
    mode = FlagMode.ON if on else FlagMode.PERCENT if percent is not None else FlagMode.WALLETS
    try:
        change = FlagChange(
            mode=mode,
            percent=percent,
            wallets=wallets or None,
            variants=_variants(variants),
            description=description,
        )
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    actor = _actor()

    async def work(session: AsyncSession) -> str:
        flag = await service.set_flag(session, name, change, actor)
        return describe(FlagRead.model_validate(flag))

    typer.echo(_run(work))


@app.command("off")
def off_command(name: str = typer.Argument(..., help="The flag")) -> None:
    """Turn a flag off for everyone (its percentage, wallets and variants are kept)."""
    actor = _actor()

    async def work(session: AsyncSession) -> str:
        await service.get_flag(session, name)  # off for a flag that does not exist: a typo
        flag = await service.set_flag(session, name, FlagChange(mode=FlagMode.OFF), actor)
        return describe(FlagRead.model_validate(flag))

    typer.echo(_run(work))
