"""An embedded server as a child process of the one `refit` process that owns it.

Started in the foreground (no daemonizing), so the owner sees it die and starts it again, and
with a parent-death signal, so it stops when the owner is killed outright. Its output goes to
a log file beside its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from refit.parent_death import die_with_parent

log = structlog.get_logger("refit.embedded")

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


class ServerDidNotStart(RuntimeError):
    pass


@dataclass
class ChildServer:
    name: str
    argv: list[str]
    log_file: Path
    # True once this server (this process, not one before it) takes connections; cheap and
    # never raises.
    is_ready: Callable[[ChildServer], bool]
    # PostgreSQL: SIGINT is its "fast shutdown" (SIGTERM would wait for every client to leave).
    stop_signal: signal.Signals = signal.SIGTERM
    user: str | None = None
    on_start: Callable[[ChildServer], None] | None = None
    # Run before each start (a restart included).
    prepare: Callable[[], None] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def spawn(self) -> None:
        """Start the process (quick: waiting for it is `wait_ready`). Call it from the main
        thread: the parent-death signal follows the thread that forks."""
        if self.prepare is not None:
            self.prepare()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as output:
            self.process = subprocess.Popen(  # noqa: S603 (our own server binaries, an argv list: no shell)
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                user=self.user,
                # The owner's Ctrl-C reaches its whole process group; the server is stopped
                # by the owner, in order, after the API and worker have let go of it.
                start_new_session=True,
                preexec_fn=die_with_parent(self.stop_signal),
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self._ready_by(deadline):
            time.sleep(0.02)

    async def wait_ready_async(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        # Polled: a server says nothing when it is ready; its socket or pid file shows it.
        while not self._ready_by(deadline):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    def _ready_by(self, deadline: float) -> bool:
        """True once ready (announced); raises if it died or the deadline passed."""
        if self.is_ready(self):
            self._started()
            return True
        if not self.alive():
            code = self.process.returncode if self.process else None
            raise ServerDidNotStart(
                f"{self.name} exited ({code}) while starting: see {self.log_file}"
            )
        if time.monotonic() > deadline:
            self.stop()
            raise ServerDidNotStart(f"{self.name} did not start in {READY_TIMEOUT_SECONDS:.0f} s")
        return False

    def _started(self) -> None:
        if self.on_start is not None:
            self.on_start(self)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(self.stop_signal)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("embedded.killed", server=self.name, pid=process.pid)
            process.kill()
            process.wait()
