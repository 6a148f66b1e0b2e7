"""The command line's expected failures, each said in one line with what to do, and the exit
statuses scripts can rely on (the README's `refit` section lists them).

Only failures named here are shortened: a bug still shows its traceback. Nothing heavy is
imported: an exception type is looked for only in a module already loaded, since an exception
of a module nobody imported cannot have been raised.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

EXIT_OK = 0
# The command's answer is no, or it refused what it was asked (its own message says which):
# differences found, no worker alive, a file or an operator name refused, a backup that failed.
EXIT_NO = 1
# Bad usage: an unknown option, a missing argument, a file that does not exist (click's own).
EXIT_USAGE = 2
# It could not do its work: the settings were refused (the worker's treasury keypair among
# them), or a server it needs (the database,
# Redis, the Solana ledger) did not answer. A server that could not start exits with it too
# (refit.startup.STARTUP_FAILURE, uvicorn's own number for it), so `refit api`
# refusing its settings and `refit flags list` finding no database agree.
EXIT_CANNOT_RUN = 3

_REASON_CHARS = 200
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def describe(exc: BaseException) -> list[str] | None:
    """The lines to print for an expected failure (settings refused, a server not answering),
    or None for anything else."""
    settings_error = _settings_refused(exc)
    if settings_error is not None:
        return settings_error
    for current in _causes(exc):
        if isinstance(current, _types("refit.ledger.treasury", "TreasuryRefused")):
            return [f"refit: {current}"]
        if isinstance(current, _types("solana.exceptions", "SolanaRpcException")):
            return [_ledger(current)]
        if isinstance(current, _http_transport_errors()):
            return [_ledger(current)]
        if isinstance(current, _types("redis.exceptions", "ConnectionError", "TimeoutError")):
            return [_redis(current)]
        if isinstance(current, _database_errors()):
            return [_database(current)]
    return None


def _settings_refused(exc: BaseException) -> list[str] | None:
    # What and why, one line per setting. Not the error's own text: it repeats every input
    # value, secrets included.
    validation = _types("pydantic", "ValidationError")
    if not isinstance(exc, validation) or getattr(exc, "title", None) != "Settings":
        return None
    lines = []
    for error in exc.errors():  # type: ignore[attr-defined]
        where = ".".join(str(part) for part in error["loc"])
        lines.append(f"refit: {where + ': ' if where else ''}{error['msg']}")
    return lines


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it, outermost first: drivers wrap each other (SQLAlchemy around
    psycopg, procrastinate around both, solana around httpx), and a task group wraps all."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _types(module: str, *names: str) -> tuple[type[BaseException], ...]:
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, name) for name in names if hasattr(loaded, name))


def _http_transport_errors() -> tuple[type[BaseException], ...]:
    # solana-py speaks through httpx2 (its fork of httpx); the connection failed or timed out.
    return _types("httpx", "TransportError") + _types("httpx2", "TransportError")


def _database_errors() -> tuple[type[BaseException], ...]:
    return _types(
        "sqlalchemy.exc", "OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"
    ) + _types("psycopg", "OperationalError")  # psycopg_pool.PoolTimeout is one too


def _reason(exc: BaseException) -> str:
    """The error's first line, without the driver's wrapping."""
    inner = getattr(exc, "orig", None) or exc  # SQLAlchemy's DBAPIError around psycopg's
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    text = text.removeprefix("connection failed: ")
    if isinstance(exc, _types("solana.exceptions", "SolanaRpcException")) and exc.__cause__:
        cause = exc.__cause__  # its own text is the class of the error it wraps
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if status is not None:
            # An HTTP error's text repeats the URL, a provider's API key in it: its status only.
            text = f"{type(cause).__name__}: HTTP {status}"
        else:
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            text = f"{type(cause).__name__}: {first}" if first else type(cause).__name__
    elif isinstance(exc, _http_transport_errors()):
        text = f"{type(exc).__name__}: {text}" if str(exc) else type(exc).__name__
    # Whatever a driver put in its message, no URL reaches the terminal (or a CI log) whole.
    return _URL.sub(lambda m: _origin(m.group(0)), text)[:_REASON_CHARS]


def _settings() -> Any:
    """The settings the command ran with (they loaded, or it could not have got this far)."""
    module = sys.modules.get("refit.settings")
    try:
        return module.get_settings() if module is not None else None
    except Exception:  # refused: then say what failed without saying where
        return None


def _origin(url: str) -> str:
    """Where a URL points, never its credentials, path or query (providers put keys there)."""
    parts = urlsplit(url)
    if parts.scheme == "unix" or not parts.hostname:
        socket = parse_qs(parts.query).get("host", [parts.path])[0]
        return f"the socket {socket}"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _ledger(exc: BaseException) -> str:
    settings = _settings()
    where = f" at {_origin(settings.solana_rpc_endpoint)}" if settings else ""
    todo = (
        "check REFIT_SOLANA_RPC_URL"
        if settings is not None and settings.solana_rpc_url
        else "start `refit run` (or `refit ledger`), or set REFIT_SOLANA_RPC_URL"
    )
    return f"refit: the Solana ledger{where} is not answering ({_reason(exc)}): {todo}"


def _redis(exc: BaseException) -> str:
    settings = _settings()
    url = settings.redis_url if settings is not None else None
    where = f" at {_origin(url)}" if url else ""
    todo = (
        "check that Redis runs there and REFIT_REDIS_URL names it"
        if url
        else "run the command again (unset, REFIT_REDIS_URL means refit's own Redis)"
    )
    return f"refit: Redis{where} is not answering ({_reason(exc)}): {todo}"


def _database(exc: BaseException) -> str:
    settings = _settings()
    url = settings.database_url if settings is not None else None
    todo = (
        "check that PostgreSQL runs there and REFIT_DATABASE_URL names it"
        if url
        else "run the command again (unset, REFIT_DATABASE_URL means refit's own PostgreSQL)"
    )
    where = ""
    if url:
        where = f" at {_origin(url)}"
        if urlsplit(url).hostname:
            where += urlsplit(url).path
    return f"refit: cannot connect to the database{where} ({_reason(exc)}): {todo}"
