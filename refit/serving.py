"""Serving: the API and/or the worker in this process, or several API processes on one port
(`refit api`, `refit worker`; `refit run` starts them as its children, refit.run). The command
line imports this only for the commands that serve."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from refit import embedded, parent_death, queue, startup, tracing
from refit.error_reports import init_sentry
from refit.resources import close_resources, open_resources
from refit.settings import Settings, get_settings
from refit.supervisor import metrics_shared_by_processes, run_on_uvloop

log = structlog.get_logger("refit.serving")


# A process that runs nothing but jobs yields the CPU to the API's when both want it: an API
# request has a client waiting on its answer (a carrier's webhook is redelivered if not
# acknowledged in time); a job has none, and the work waiting for it is kept (every kept
# webhook has its job). Under a burst the jobs wait their turn, and the webhook jobs then
# settle many rows each (refit/shipping/webhook_batch.py). On a machine of its own the
# worker runs at full speed as before: niceness only orders processes that compete.
WORKER_NICENESS = 10


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
        # The worker never imports the app (FastAPI, every router, the dashboard).
        from refit import http_server
        from refit.app import create_app
        from refit.events.stream import end_streams

        app = create_app(settings, resources=resources)
        # /readyz answers 503 while no worker is alive when this process runs one, or runs
        # beside one that `refit run` supervises (refit.health).
        app.state.expect_worker = expect_worker or worker
        server = http_server.InLoopServer(http_server.config(settings, app))
        runners.append(server.serve())
        stoppers.append(lambda: setattr(server, "should_exit", True))
        # uvicorn waits for open responses to finish; order-event streams never do by
        # themselves (sse-starlette sees only uvicorn's own signal handler, not ours).
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
    watch = asyncio.ensure_future(parent_death.watch_parent(stop))
    try:
        await asyncio.gather(*runners)
    finally:
        watch.cancel()
        await queue.close_queue(pool)
        await close_resources(resources)


def serve(
    api: bool,
    worker: bool,
    migrate_first: bool,
    api_workers: int = 1,
    expect_worker: bool = False,
) -> None:
    # The code is loaded before the wait for `refit run`'s migrations (startup's gate).
    with startup.collector_paused():
        if api and api_workers == 1:  # N processes each load it themselves
            importlib.import_module("refit.app")
        if worker:
            queue.queue.perform_import_paths()
    startup.wait_for_start_gate()
    if worker and not api:
        os.nice(WORKER_NICENESS)
    if worker:
        # The one process that signs: it refuses to start on a keypair it cannot read or
        # that is not REFIT_TREASURY_PUBKEY's, before it takes a job.
        from refit.ledger.treasury import worker_treasury

        worker_treasury(get_settings())
    embedded_database = not get_settings().database_url
    settings, servers = embedded.settings_with_servers()
    try:
        if migrate_first:
            startup.migrate_and_seed(settings, embedded_database)
        if api:
            from refit import http_server

            startup.refuse_production_without_admin(settings)
            http_server.refuse_a_taken_port(settings)
            log.info(
                "refit.listening",
                url=f"http://{settings.host}:{settings.port}",
                processes=api_workers,
            )
        if api and api_workers > 1:
            assert not worker, "the worker runs in its own process: `refit worker`"
            with metrics_shared_by_processes():
                http_server.serve_processes(settings, api_workers)
        else:
            run_on_uvloop(
                _serve_until_signal(settings, api=api, worker=worker, expect_worker=expect_worker)
            )
    finally:
        servers.stop()
