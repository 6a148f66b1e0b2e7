"""What `refit run` prints once it is ready (`/readyz` answered 200), with the time it took:
where everything is, for someone new to the project.

The embedded PostgreSQL's start-up chatter is no longer shown (REFIT_LOG_LEVEL=DEBUG shows
it; the server's own log is its data directory's `log` file), so this is what a first
`make run` greets them with."""

from __future__ import annotations

from urllib.parse import urlsplit

import typer

from refit.settings import DEV_ADMIN_PASSWORD, Settings


def lines(
    settings: Settings, *, embedded_database: bool, ready_in_seconds: float | None = None
) -> list[str]:
    api = f"http://{settings.host}:{settings.port}"
    state = "is starting" if ready_in_seconds is None else f"is ready in {ready_in_seconds:.1f} s"
    shown = [
        "",
        f"ReFit {state} (API and job worker; Ctrl-C stops everything)",
        f"  API        {api}",
        f"  API docs   {api}/docs",
    ]
    if embedded_database and settings.env == "development":
        password = (
            f"password {DEV_ADMIN_PASSWORD}"
            if settings.admin_password == DEV_ADMIN_PASSWORD
            else "password from REFIT_ADMIN_PASSWORD"
        )
        shown.append(f"  Dashboard  {api}/admin  (operator `admin`, {password})")
    else:
        shown.append(f"  Dashboard  {api}/admin  (operators: `refit operator create`)")
    if settings.smtp_url:
        shown.append("  Mail       sent over REFIT_SMTP_URL")
    else:
        shown.append(f"  Mail       written to {settings.outbox_dir.resolve()}/ (nothing is sent)")
    if settings.solana_rpc_url:
        # Scheme and host only: providers put their API key in the path or the query.
        rpc = urlsplit(settings.solana_rpc_url)
        shown.append(f"  Solana     {rpc.scheme}://{rpc.hostname} (REFIT_SOLANA_RPC_URL)")
    else:
        shown.append(f"  Ledger     {settings.solana_rpc_endpoint}  (local Solana JSON-RPC)")
    if embedded_database:
        shown.append(f"  Data       {settings.data_dir.resolve()}/  (PostgreSQL, Redis, labels)")
    shown.append("")
    return shown


def show(
    settings: Settings, *, embedded_database: bool, ready_in_seconds: float | None = None
) -> None:
    shown = lines(settings, embedded_database=embedded_database, ready_in_seconds=ready_in_seconds)
    typer.echo("\n".join(shown))
