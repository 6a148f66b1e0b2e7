"""How a process logs: structlog over the standard library, JSON in production and off a
terminal, the console renderer on one; short lines for a person running an operator's command
(`for_people`). Kept apart from refit.logs (the request middleware and job observation), so
`refit run`'s parent sets up its logging without importing the metrics, tracing and queue."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

import structlog

from refit.settings import Settings

# Set while an operator's command runs (`refit flags list`, not the servers): see for_people.
_for_people = False


@contextlib.contextmanager
def for_people() -> Iterator[None]:
    """While a command the command line runs for a person: on a terminal its log lines are
    short (level, event, fields), even in production, and libraries say only warnings (they
    say INFO for every HTTP call and every migration step). The servers keep theirs: JSON in
    production and off a terminal, which tests and collectors parse. Logging is put back as
    it was after, for a process that goes on (a test running the command in-process)."""
    global _for_people
    root, ours = logging.getLogger(), logging.getLogger("refit")
    saved = (root.level, root.handlers[:], ours.level)
    _for_people = True
    try:
        yield
    finally:
        _for_people = False
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        ours.setLevel(saved[2])


def _drop_time_and_logger(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    # A person at a terminal knows the time, and does not need the module's name.
    event.pop("timestamp", None)
    event.pop("logger", None)
    return event


def configure_logging(settings: Settings) -> None:
    terminal = sys.stderr.isatty()
    fmt = settings.log_format
    if fmt == "auto":
        on_console = terminal and (_for_people or not settings.is_production)
        fmt = "console" if on_console else "json"
    short = _for_people and fmt == "console"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    # The lines' content is the same for everyone (loggers keep their processors once used):
    # only the handler renders them differently.
    renderer: Any = structlog.processors.JSONRenderer()
    if short:
        renderer = structlog.dev.ConsoleRenderer(
            colors=terminal,
            pad_event_to=0,
            pad_level=False,
            # Rich's traceback shows local variables: settings, secrets among them.
            exception_formatter=structlog.dev.plain_traceback,
        )
    elif fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=terminal)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    rendering: list[Any] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info if fmt == "json" else (lambda _l, _m, e: e),
    ]
    if short:
        rendering.append(_drop_time_and_logger)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[*rendering, renderer]
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    level = root.level
    logging.getLogger("refit").setLevel(logging.NOTSET)
    if _for_people and level > logging.DEBUG:
        root.setLevel(max(level, logging.WARNING))
        logging.getLogger("refit").setLevel(level)
    # uvicorn's own access log (the local ledger's server, tests' in-process servers) repeats
    # our http.request line; procrastinate is chatty at INFO.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    # httpx logs every call's full URL at INFO: an RPC provider's API key rides in its query.
    # httpx2 is solana-py's fork of it, and says the same.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)


def describe_error(exc: BaseException) -> str:
    """An exception as a log field: its type and its message. Not `repr`: redis-py's errors
    print as "network:TimeoutError" there, which hides whether a connect, a read or the
    pool's wait ran out."""
    return f"{type(exc).__name__}: {exc}"[:300]
