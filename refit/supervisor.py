"""`refit run`'s components, each in its own process, started again when one dies.

The API and the job worker run as child processes (`refit api`, `refit worker`): a crash, a
kill by the OOM killer or an exit on an error nobody foresaw ends that component alone, and
this parent starts it again after a backoff, saying so in the log. The parent holds the
embedded PostgreSQL and Redis (and the local ledger), which must outlive the children. Each
child gets SIGTERM from the kernel when the parent dies, however it dies (refit.parent_death).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
import uvloop

from refit.parent_death import die_with_parent

log = structlog.get_logger("refit.supervisor")

# A component that ran this long before dying had been fine: its next restart is immediate-ish
# again, rather than after the backoff its earlier crashes had built up.
HEALTHY_AFTER_SECONDS = 60.0
RESTART_MAX_SECONDS = 30.0
# How long a component may take to stop after SIGTERM (the worker lets running jobs finish
# for up to a minute) before it is killed.
STOP_GRACE_SECONDS = 75.0


@dataclass(frozen=True)
class Component:
    name: str
    args: tuple[str, ...]  # `refit ARGS`


class Supervisor:
    """Runs each component until `stop()`; one that exits is started again with backoff."""

    def __init__(self, components: list[Component], env: dict[str, str]) -> None:
        self.components = components
        self.env = env
        self.stopping = asyncio.Event()
        # The running process of each component, by name (tests and logs read the pids).
        self.processes: dict[str, asyncio.subprocess.Process] = {}

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._keep_running(c) for c in self.components))

    async def _keep_running(self, component: Component) -> None:
        loop = asyncio.get_running_loop()
        wait = 1.0
        while not self.stopping.is_set():
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "refit",
                *component.args,
                env=self.env,
                # A SIGKILLed parent runs no cleanup: the kernel tells the child instead.
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
            self.processes[component.name] = process
            log.info("run.component_started", component=component.name, pid=process.pid)
            started = loop.time()
            exited = asyncio.ensure_future(process.wait())
            stop_asked = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({exited, stop_asked}, return_when=asyncio.FIRST_COMPLETED)
            stop_asked.cancel()
            if self.stopping.is_set():
                await self._stop(component, process, exited)
                return
            if loop.time() - started > HEALTHY_AFTER_SECONDS:
                wait = 1.0
            # Never restarted at once: a Ctrl-C reaches the children a moment before this
            # process's own handler runs, and must not look like a crash to restart.
            log.error(
                "run.component_exited",
                component=component.name,
                exit_code=process.returncode,
                restarting_in_seconds=wait,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=wait)
            wait = min(wait * 2, RESTART_MAX_SECONDS)

    async def _stop(
        self,
        component: Component,
        process: asyncio.subprocess.Process,
        exited: asyncio.Future[int],
    ) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), STOP_GRACE_SECONDS)
        except TimeoutError:
            log.error("run.component_killed", component=component.name, pid=process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await exited


@contextmanager
def metrics_shared_by_processes() -> Iterator[None]:
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


def run_on_uvloop(main: Coroutine[Any, Any, None]) -> None:
    # uvloop: every await costs less than on asyncio's loop (the API's processes run on it too).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
