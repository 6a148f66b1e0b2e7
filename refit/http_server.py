"""Granian, the HTTP server under every `refit api`: its options, the port check before it
listens, and `refit api --workers N` (N processes on one port, Granian's own supervisor).

The single process (`refit api --workers 1`, `refit run`'s API child, the API beside the worker)
runs Granian's embedded server in its own loop (refit.serving); the options are the same."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import structlog
import typer
from granian.constants import HTTPModes, Interfaces, Loops
from granian.log import LogLevels
from granian.server import MPServer
from granian.server.mp import WorkerProcess

from refit import startup
from refit.settings import Settings

log = structlog.get_logger("refit.http_server")

STARTUP_FAILURE = startup.STARTUP_FAILURE

# Granian's own lines (listening, each process spawned, respawned or stopped) go through our
# handler, formatted as ours; its access log stays off: refit.logs writes `http.request`.
_LOGGING: dict[str, Any] = {
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": False},
    }
}


def options(settings: Settings) -> dict[str, Any]:
    """What the embedded server and the processes' server share. No X-Forwarded-For is read
    here: Granian gives the TCP peer as the client (its proxy-headers wrapper is not used), and
    refit.ratelimit.client_ip trusts the header only from REFIT_TRUSTED_PROXIES."""
    try:
        level = LogLevels(settings.log_level.lower())
    except ValueError:
        level = LogLevels.info
    return {
        "address": settings.host,
        "port": settings.port,
        "interface": Interfaces.ASGI,  # with the lifespan
        "http": HTTPModes.http1,  # what clients and the proxy in front speak to us
        "websockets": False,  # no route of ours is one
        "backlog": 2048,  # uvicorn's, which served before
        "log_enabled": True,
        "log_level": level,
        "log_dictconfig": _LOGGING,
        "log_access": False,
    }


def refuse_a_taken_port(settings: Settings) -> None:
    """Exit STARTUP_FAILURE, saying so, when something listens on the port already. Granian's
    listeners share their port (SO_REUSEPORT: that is how its processes share one), so a
    second `refit api` on a served port would quietly take part of its connections; a socket
    bound without it, here, finds the port taken (and a port nobody may bind is said in one
    line, not a Rust backtrace)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Granian binds
            probe.bind((settings.host, settings.port))
    except OSError as exc:
        log.error("refit.cannot_listen", host=settings.host, port=settings.port, error=str(exc))
        raise typer.Exit(STARTUP_FAILURE) from None


def serve_processes(settings: Settings, workers: int) -> None:
    """`workers` API processes on one port. Each is a fresh interpreter (spawned, not forked:
    the parent's metrics module was loaded before the shared metrics folder was set) that
    builds its app with `create_app()` from the environment (where `settings_with_servers`
    exported the embedded servers' URLs). One that dies is started again; none is killed for
    starting slowly (Granian has no start-up deadline: 11 s to import the app on a loaded
    2-core box killed every one of uvicorn's, at its default 5 s). SIGTERM or SIGINT stops
    them all gracefully, then this returns."""
    # Granian starts its processes by multiprocessing's default method, fork on Linux.
    multiprocessing.set_start_method("spawn", force=True)
    server = _ApiProcesses(
        "refit.app:create_app",
        factory=True,
        workers=workers,
        loop=Loops.uvloop,
        respawn_failed_workers=True,
        **options(settings),
    )
    server.serve(spawn_target=_api_process, target_loader=_load_app, wrap_loader=False)
    # A process that could not start (bad settings, a failing lifespan) stopped the others:
    # say so in the exit status, so an orchestrator sees a failed deploy, not a clean stop.
    if server.could_not_start:
        raise typer.Exit(STARTUP_FAILURE)


class _ApiProcesses(MPServer):
    could_not_start = False

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        if args and isinstance(args[0], int):  # a signal, not our own call below
            log.info("refit.stopping", signal=signal.Signals(args[0]).name)
        super().signal_handler_interrupt()

    def _respawn_workers(
        self, workers: list[int], spawn_target: Any, target_loader: Any, delay: float = 0
    ) -> None:
        # Granian would start a process that could not start again (and again, each import
        # seconds long, while its crash-loop check looks at 5.5 s): the app, its settings
        # or a server it needs is broken, and every start would fail the same way.
        failed = [i for i in workers if self.wrks[i].inner.exitcode == STARTUP_FAILURE]
        if failed:
            pids = [self.wrks[i].inner.pid for i in failed]
            log.error("refit.api_process_could_not_start", pids=pids)
            self.could_not_start = True
            super().signal_handler_interrupt()
            return
        super()._respawn_workers(workers, spawn_target, target_loader, delay)


def _load_app() -> Any:
    """Each process's app (Granian's target loader, in the process)."""
    try:
        with startup.collector_paused():
            from refit.app import create_app

        return create_app()
    except Exception:
        log.exception("refit.api_process_could_not_start", pid=os.getpid())
        sys.exit(STARTUP_FAILURE)


_GRANIAN_ASGI_PROCESS: Callable[..., None] = inspect.unwrap(MPServer._spawn_asgi_lifespan_worker)


@WorkerProcess.wrap_target
def _api_process(worker_id: int, callback: Any, sock: Any, ipc: Any, loop: Any, *rest: Any) -> None:
    """One process: Granian's own ASGI process (the lifespan, then requests until SIGTERM or
    SIGINT, then the lifespan's end), with two things of ours around it."""
    _end_streams_first(loop)
    try:
        _GRANIAN_ASGI_PROCESS(worker_id, callback, sock, ipc, loop, *rest)
    except SystemExit:
        # Granian's one exit here: the lifespan's start-up failed (it logged why).
        sys.exit(STARTUP_FAILURE)


def _end_streams_first(loop: Any) -> None:
    """Granian waits for every open response before it stops, and an order-event stream never
    ends by itself: the handler it adds to this loop for SIGTERM and SIGINT asks the streams to
    end (refit.events.stream.end_streams) before the graceful stop it begins."""
    from refit.events.stream import end_streams

    add_signal_handler = loop.add_signal_handler

    def add_ending_streams(sig: int, callback: Callable[..., Any], *args: Any) -> None:
        def handle(*handled: Any) -> None:
            end_streams()
            callback(*handled)

        add_signal_handler(sig, handle, *args)

    loop.add_signal_handler = add_ending_streams
