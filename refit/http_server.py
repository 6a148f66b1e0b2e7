"""uvicorn, the HTTP server under every `refit api`: its options, the port check before it
listens, and `refit api --workers N` (N processes on one port, uvicorn's own supervisor).

The single process (`refit api --workers 1`, `refit run`'s API child, the API beside the worker)
runs uvicorn's server in its own loop (refit.serving); the options are the same.

uvicorn on uvloop and httptools served the same app for less than Granian, measured in the same
`python -m bench.read_cost` run (docs/capacity.md, the sixth round): less CPU per read both at
500 reads/s and at saturation, and a lower p99 at 500 reads/s."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
import typer
import uvicorn
from uvicorn.supervisors import Multiprocess

from refit import startup
from refit.bounded_head import BoundedHeadProtocol
from refit.settings import Settings

log = structlog.get_logger("refit.http_server")

STARTUP_FAILURE = startup.STARTUP_FAILURE

# uvicorn's parent pings each API process and kills one that has not answered in this long.
# Its default, 5 s, is shorter than a new process takes to import the app on a busy machine
# (11 s measured on a loaded 2-core box, before the process can answer): every process was
# killed before it could start, and again, and again.
WORKER_HEALTHCHECK_SECONDS = 60

KEEP_ALIVE_SECONDS = 75  # nginx's default keepalive_timeout, past the balancers' idle ones


def config(settings: Settings, app: Any, **more: Any) -> uvicorn.Config:
    """What the single process's server and each of N processes' servers share.

    No X-Forwarded-For is read here (uvicorn's proxy headers would believe it from loopback,
    and rotating it dodged every per-IP limit): refit.ratelimit.client_ip trusts the header
    only from REFIT_TRUSTED_PROXIES."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=BoundedHeadProtocol,  # uvicorn's httptools parser, with the head bounded
        ws="none",  # no route of ours is a WebSocket
        lifespan="on",  # a lifespan that fails is a failed start (exit 3), never skipped
        log_config=None,  # ours (refit.log_setup), set before uvicorn's first line
        # As a number: uvicorn knows five names, and logging (and our settings) more ("WARN").
        log_level=logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO),
        access_log=False,  # refit.logs writes `http.request` for every answer
        proxy_headers=False,
        server_header=False,  # which server we run is nobody's business
        backlog=2048,
        # Longer than a load balancer keeps an idle connection to us (AWS's ALB: 60 s), so the
        # balancer closes first: a server that closes first races the balancer's next request
        # on that connection into a 502 (uvicorn's own default is 5 s).
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        **more,
    )


def refuse_a_taken_port(settings: Settings) -> None:
    """Exit STARTUP_FAILURE, saying so in one line, when the port is taken or nobody may bind
    it, before the app is built and the embedded servers have started for nothing."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((settings.host, settings.port))
    except OSError as exc:
        log.error("refit.cannot_listen", host=settings.host, port=settings.port, error=str(exc))
        raise typer.Exit(STARTUP_FAILURE) from None


def serve_processes(settings: Settings, workers: int) -> None:
    """`workers` API processes on one port. uvicorn's supervisor binds the socket and starts
    each process as a fresh interpreter (spawned, not forked: the parent's metrics module was
    loaded before the shared metrics folder was set) that builds its app with `create_app()`
    from the environment (where `settings_with_servers` exported the embedded servers' URLs).
    One that dies is started again; one that could not start stops them all. SIGTERM or
    SIGINT stops them all gracefully (each ends its order-event streams first: sse-starlette
    hooks uvicorn's signal handler), then this returns."""
    server_config = config(
        settings,
        "refit.http_server:load_app",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
    supervisor = _ApiProcesses(server_config, sockets=[server_config.bind_socket()])
    supervisor.run()
    # A process that could not start (bad settings, a failing lifespan) stopped the others:
    # say so in the exit status, so an orchestrator sees a failed deploy, not a clean stop.
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        log.error("refit.api_process_could_not_start", pids=failed)
        raise typer.Exit(STARTUP_FAILURE)


class _ApiProcesses(Multiprocess):
    """uvicorn's supervisor, saying which signal stopped it in our own line."""

    def handle_int(self) -> None:
        log.info("refit.stopping", signal=signal.SIGINT.name)
        super().handle_int()

    def handle_term(self) -> None:
        log.info("refit.stopping", signal=signal.SIGTERM.name)
        super().handle_term()


class InLoopServer(uvicorn.Server):
    """The single process's server, in the loop it shares with the worker's jobs: signals are
    handled by refit.serving for both together, and stop it by `should_exit`."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def load_app() -> Any:
    """Each process's app (the factory uvicorn calls in the process)."""
    try:
        with startup.collector_paused():
            from refit.app import create_app

        return create_app()
    except Exception:
        log.exception("refit.api_process_could_not_start", pid=os.getpid())
        sys.exit(STARTUP_FAILURE)
