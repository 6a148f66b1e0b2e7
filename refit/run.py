"""`refit run`: everything on one machine. The embedded servers (when no URLs are set),
migrations, then the API and the worker as supervised child processes beside the local
Solana ledger; the banner once `/readyz` answers, with the time it took.

This process imports neither the app nor the worker: they are the children's. Each child and
each embedded server is started again when it dies, and dies with this process, however it
dies (refit.parent_death)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from refit import banner, embedded, parent_death, startup
from refit.settings import Settings, get_settings
from refit.supervisor import (
    Component,
    Supervisor,
    metrics_shared_by_processes,
    run_on_uvloop,
)

log = structlog.get_logger("refit.run")

# `refit run`'s components, each its own process (refit.supervisor): one that dies is started
# again without taking the others down. One API process: the worker is beside it.
RUN_COMPONENTS = [
    Component("api", ("api", "--workers", "1", "--expect-worker")),
    Component("worker", ("worker",)),
]
READY_POLL_SECONDS = 0.1
_IMPORTED_AT = time.monotonic()


def run_supervised() -> None:
    embedded_database = not get_settings().database_url
    settings, servers = embedded.settings_with_servers()
    try:
        # The children share one metrics folder: the API's /metrics counts the worker's jobs.
        with metrics_shared_by_processes(), startup.start_gate(settings.data_dir) as gate:
            run_on_uvloop(_supervise(settings, servers, embedded_database, gate))
    finally:
        servers.stop()


async def _supervise(
    settings: Settings, servers: embedded.EmbeddedServers, embedded_database: bool, gate: Path
) -> None:
    # The children find the embedded servers through the URLs exported to this environment,
    # and wait for the gate (created once migrated) after importing their code.
    env = {
        **os.environ,
        startup.START_GATE_VARIABLE: str(gate),
        parent_death.PARENT_VARIABLE: str(os.getpid()),
        **_treasury_pubkey_for_children(settings),
    }
    supervisor = Supervisor(RUN_COMPONENTS, env=env)
    stopping = asyncio.Event()
    runners: list[Awaitable[Any]] = [
        asyncio.ensure_future(supervisor.run()),
        servers.keep_alive(stopping),
        _greet_when_ready(settings, embedded_database, stopping),
    ]
    stoppers: list[Callable[[], None]] = [supervisor.stop, stopping.set]
    # The children first: they take seconds to import their code; the ledger (a second of
    # LiteSVM and solders) is built while they do.
    for _ in range(500):
        if len(supervisor.processes) == len(RUN_COMPONENTS):
            break
        await asyncio.sleep(0.01)
    if not settings.solana_rpc_url:
        with startup.collector_paused():
            from refit.ledger.server import LedgerServer

        # The local Solana ledger payouts go to, in this process: its journal outlives the
        # children. A port already taken is logged, not fatal.
        local_ledger = LedgerServer(settings, optional=True)
        runners.append(local_ledger.serve())
        stoppers.append(local_ledger.stop)

    def stop() -> None:
        log.info("refit.stopping")
        for stopper in stoppers:
            stopper()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    running = asyncio.gather(*runners)
    try:
        # Migrated while the children import their code; they start once the gate opens.
        with startup.collector_paused():  # Alembic and SQLAlchemy load here
            await asyncio.to_thread(startup.migrate_and_seed, settings, embedded_database)
        await asyncio.to_thread(startup.refuse_production_without_admin, settings)
    except BaseException:
        stop()
        await asyncio.shield(running)
        raise
    await asyncio.to_thread(gate.touch)
    await running


def _treasury_pubkey_for_children(settings: Settings) -> dict[str, str]:
    """REFIT_TREASURY_PUBKEY for the children, when unset: this process owns the development
    keypair (and funds it on the local ledger), so the API child never opens it."""
    if settings.treasury_pubkey is not None:
        return {}
    with startup.collector_paused():
        from refit.ledger.treasury import load_treasury
    try:
        return {"REFIT_TREASURY_PUBKEY": str(load_treasury(settings).pubkey())}
    except (OSError, ValueError):
        return {}  # the worker refuses to start and says why, in one line


async def _greet_when_ready(
    settings: Settings, embedded_database: bool, stopping: asyncio.Event
) -> None:
    """The banner, once /readyz answers 200 (database, Redis and a live worker), with the
    seconds since this process started."""
    import httpx

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104 (a comparison, not a bind: a wildcard host is polled on loopback)
    url = f"http://{host}:{settings.port}/readyz"
    async with httpx.AsyncClient(timeout=2.0) as http:
        while not stopping.is_set():
            try:
                if (await http.get(url)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(READY_POLL_SECONDS)
        else:
            return
    took = seconds_since_start()
    log.info("refit.ready", seconds=round(took, 1))
    banner.show(settings, embedded_database=embedded_database, ready_in_seconds=took)


def seconds_since_start() -> float:
    """Since this process was started (the kernel's count, interpreter start-up included;
    elsewhere than Linux, since this module was imported)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        started_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED_AT
    return uptime - started_ticks / os.sysconf("SC_CLK_TCK")
