"""`refit operator ...`: operator accounts, and the checks `refit run` / `refit api` make.

A password is read from a hidden, confirmed prompt, or from the first line of standard input
when it is not a terminal (`printf '%s\\n' "$PASSWORD" | refit operator create ...`); never
from an argument, which would land in shell history and in `ps`.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from refit import embedded
from refit.admin import operators
from refit.models import Operator, OperatorRole
from refit.transactions import command_transaction

app = typer.Typer(help="Operator accounts (who may use /api/admin).", no_args_is_help=True)


NO_ADMIN = (
    "refusing to start in production: there is no enabled admin operator. Create one with "
    "`refit operator create USERNAME --role admin` (the password is read from a prompt or "
    "standard input), then start again."
)


def cli_actor() -> str:
    """Who is running this command, as the audit trail names them: "cli:<OS login>". A person
    with database access can always make an admin; it is recorded, not prevented."""
    return f"{operators.CLI_ACTOR_PREFIX}{getpass.getuser()}"


def _read_password() -> str:
    if sys.stdin.isatty():
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        operators.check_password(password)
    except operators.OperatorError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from exc
    return password


def _run(work: Callable[[AsyncSession], Awaitable[Operator]]) -> Operator:
    """`work` in one transaction on the service's database (the embedded one when none is
    configured); an OperatorError is the command's error message and exit status 1."""
    settings, servers = embedded.settings_with_servers()
    try:
        assert settings.database_url
        return asyncio.run(command_transaction(settings.database_url, work))
    except operators.OperatorError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from exc
    finally:
        servers.stop()


@app.command("create")
def create_command(
    username: str = typer.Argument(..., help="2-32 characters: letters, digits, . _ -"),
    role: OperatorRole = typer.Option(..., "--role", help="inspector or admin"),
) -> None:
    """Create an operator. The password (12+ characters) is asked for, or read from stdin.
    An admin made here works at once (whoever runs this has the database already)."""
    try:
        operators.normalize_username(username)
    except operators.OperatorError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from exc
    password = _read_password()
    actor = cli_actor()
    operator = _run(
        lambda s: operators.create_operator(s, username, password, role, created_by=actor)
    )
    typer.echo(f"operator {operator.username} created ({operator.role}, id {operator.id})")


@app.command("set-password")
def set_password_command(username: str = typer.Argument(..., help="The operator")) -> None:
    """Give an operator a new password (asked for, or read from stdin)."""
    password = _read_password()
    operator = _run(lambda s: operators.set_password(s, username, password))
    typer.echo(f"password of operator {operator.username} changed")


@app.command("disable")
def disable_command(username: str = typer.Argument(..., help="The operator")) -> None:
    """Disable an operator: no more sign-ins, and their tokens are refused from now on."""
    actor = cli_actor()
    operator = _run(lambda s: operators.disable_operator(s, username, actor=actor))
    typer.echo(f"operator {operator.username} disabled")


async def create_first_admin(database_url: str, password: str) -> Operator | None:
    """`refit run` on the embedded default: an `admin` operator while there is none, made by
    whoever runs it ("cli:<login>")."""
    actor = cli_actor()
    return await command_transaction(
        database_url, lambda s: operators.create_first_admin(s, password, created_by=actor)
    )


async def has_enabled_admin(database_url: str) -> bool:
    return await command_transaction(database_url, operators.has_enabled_admin)
