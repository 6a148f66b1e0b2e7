"""Serving: the API and the worker in this process, several API processes on one port, and
`refit run`'s supervised children beside the local ledger. The command line (refit.cli) imports
this only for the commands that serve, so `refit --help` and the operators' commands stay quick.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
import typer
import uvicorn
import uvloop
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from refit import banner, embedded, migrate, queue, tracing
from refit.admin import cli as operator_cli
from refit.app import create_app, init_sentry
from refit.catalog.cli import seed_if_empty as seed_catalog_if_empty
from refit.events.stream import end_streams
from refit.ledger.server import LedgerServer
from refit.resources import close_resources, open_resources
from refit.settings import Settings, get_settings
from refit.supervisor import Component, Supervisor

log = structlog.get_logger("refit.serving")


# uvloop and httptools (both from uvicorn[standard]): the cheapest event loop and HTTP parser
# uvicorn has; every await and every request costs less than on asyncio's loop and h11.
SERVER_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "log_config": None,  # ours (refit.logs); uvicorn's access log is replaced by http.request
    # Off: uvicorn's would believe X-Forwarded-For from loopback (rotating it dodged every
    # per-IP limit). The client is found by ratelimit.client_ip, from REFIT_TRUSTED_PROXIES.
    "proxy_headers": False,
}


# uvicorn's parent pings each API process and kills one that has not answered in this long.
# Its default, 5 s, is shorter than a new process takes to import the app on a busy machine
# (11 s measured on a loaded 2-core box, before the process can answer): every process was
# killed before it could start, and again, and again.
WORKER_HEALTHCHECK_SECONDS = 60


def run_on_uvloop(main: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


class _Server(uvicorn.Server):
    # Signals are handled by `_serve_until_signal` for the API and the worker together.
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_until_signal(
    settings: Settings,
    *,
    api: bool,
    worker: bool,
    expect_worker: bool = False,
) -> None:
    init_sentry(settings)
    assert settings.database_url
    resources = await open_resources(settings, ping_before_use=worker)
    # The worker's jobs, SQL and carrier calls are traced too (the API's app also sets up).
    tracing.setup(settings, engine=resources.engine)
    pool = await queue.open_queue(
        settings.database_url,
        max_size=settings.worker_concurrency + 2,
        prepared_statements=settings.db_prepared_statements,
    )
    runners: list[Awaitable[Any]] = []
    stoppers: list[Callable[[], None]] = []
    if api:
        app = create_app(settings, resources=resources)
        # /readyz answers 503 while no worker is alive when this process runs one, or runs
        # beside one that `refit run` supervises (refit.health).
        app.state.expect_worker = expect_worker or worker
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            **SERVER_OPTIONS,
        )
        server = _Server(config)
        runners.append(server.serve())
        stoppers.append(lambda: setattr(server, "should_exit", True))
        # uvicorn waits for open responses to finish; order-event streams never do by
        # themselves (sse-starlette does not see signals handled here).
        stoppers.append(end_streams)
    if worker:
        # Restarted in place when it stops on a lost database: an outage never ends the
        # process (`refit run` would start it again, but the restart costs seconds).
        job_worker = queue.SupervisedWorker()
        runners.append(job_worker.run())
        stoppers.append(job_worker.stop)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("refit.stopping")
        for stopper in stoppers:
            stopper()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*runners)
    finally:
        await queue.close_queue(pool)
        await close_resources(resources)


def _serve_api_processes(settings: Settings, workers: int) -> None:
    """`workers` API processes on one port. uvicorn's supervisor binds the socket, starts each
    process as a fresh interpreter that builds its app with `create_app()` from the
    environment (where `settings_with_servers` exported the embedded servers' URLs), starts
    again one that dies, and on SIGTERM or SIGINT stops them all gracefully, then returns."""
    config = uvicorn.Config(
        "refit.app:create_app",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        host=settings.host,
        port=settings.port,
        **SERVER_OPTIONS,
    )
    with _metrics_shared_by_processes():
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
    # A process that could not start (bad settings, a failing lifespan) stopped the others:
    # say so in the exit status, so an orchestrator sees a failed deploy, not a clean stop.
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise typer.Exit(STARTUP_FAILURE)


@contextmanager
def _metrics_shared_by_processes() -> Iterator[None]:
    """Counters written to files every process of this run reads, so /metrics from any of
    them counts all (prometheus_client's multiprocess mode). The processes inherit the
    variable; a directory set by the operator is theirs to keep and to wipe."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    path = tempfile.mkdtemp(prefix="refit-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(path, ignore_errors=True)


def _migrate_and_seed(settings: Settings, embedded_database: bool) -> None:
    assert settings.database_url
    migrate.upgrade(settings.database_url)
    # A fresh database gets the shipped device catalog (an existing one is kept).
    asyncio.run(seed_catalog_if_empty(settings.database_url))
    if embedded_database and settings.env == "development":
        # ... and an operator to sign in with (REFIT_ADMIN_PASSWORD), while it has none.
        asyncio.run(operator_cli.create_first_admin(settings.database_url, settings.admin_password))


def _refuse_production_without_admin(settings: Settings) -> None:
    if settings.is_production:
        assert settings.database_url
        if not asyncio.run(operator_cli.has_enabled_admin(settings.database_url)):
            typer.echo(operator_cli.NO_ADMIN, err=True)
            raise typer.Exit(STARTUP_FAILURE)


def serve(
    api: bool,
    worker: bool,
    migrate_first: bool,
    api_workers: int = 1,
    expect_worker: bool = False,
) -> None:
    embedded_database = not get_settings().database_url
    settings, servers = embedded.settings_with_servers()
    try:
        if migrate_first:
            _migrate_and_seed(settings, embedded_database)
        if api:
            _refuse_production_without_admin(settings)
            log.info(
                "refit.listening",
                url=f"http://{settings.host}:{settings.port}",
                processes=api_workers,
            )
        if api and api_workers > 1:
            assert not worker, "the worker runs in its own process: `refit worker`"
            _serve_api_processes(settings, api_workers)
        else:
            run_on_uvloop(
                _serve_until_signal(settings, api=api, worker=worker, expect_worker=expect_worker)
            )
    finally:
        servers.stop()


# `refit run`'s components, each its own process (refit.supervisor): one that dies is started
# again without taking the others down. One API process: the worker is beside it.
RUN_COMPONENTS = [
    Component("api", ("api", "--workers", "1", "--expect-worker")),
    Component("worker", ("worker",)),
]


def run_supervised() -> None:
    embedded_database = not get_settings().database_url
    settings, servers = embedded.settings_with_servers()
    try:
        _migrate_and_seed(settings, embedded_database)
        _refuse_production_without_admin(settings)
        banner.show(settings, embedded_database=embedded_database)
        # The children share one metrics folder: the API's /metrics counts the worker's jobs.
        with _metrics_shared_by_processes():
            run_on_uvloop(_supervise(settings))
    finally:
        servers.stop()


async def _supervise(settings: Settings) -> None:
    # The children find the embedded servers through the URLs exported to this environment.
    supervisor = Supervisor(RUN_COMPONENTS, env=dict(os.environ))
    runners: list[Awaitable[Any]] = [supervisor.run()]
    stoppers: list[Callable[[], None]] = [supervisor.stop]
    if not settings.solana_rpc_url:
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
    await asyncio.gather(*runners)
