"""Children that die with their parent: Linux's parent-death signal (prctl PR_SET_PDEATHSIG).

A SIGKILLed `refit run` runs no cleanup of its own, so its children (the API, the worker, the
embedded PostgreSQL and Redis) must learn of it from the kernel: each is started with a signal
the kernel sends it when the process that started it dies. Elsewhere than Linux this is a no-op
and a killed parent can leave its children running, as before.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

import structlog

log = structlog.get_logger("refit.parent_death")

# Set by `refit run` for its children: the pid they must outlive no longer than briefly.
PARENT_VARIABLE = "_REFIT_PARENT_PID"
# A child whose graceful stop has not ended this long after its parent died exits anyway:
# with `refit run` gone, nobody would ever stop it (its embedded database went with it).
ORPHAN_EXIT_SECONDS = 10.0

_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return libc.prctl  # type: ignore[no-any-return]


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` for subprocess: the child gets `sig` when this process dies.

    The kernel sends it when the *thread* that forked the child ends, so start children from
    the main thread (the event loop's), never from a worker thread. A parent that died between
    the fork and the prctl would never send it: the child then sees a new parent and exits."""
    prctl = _prctl()
    parent = os.getpid()

    def in_child() -> None:
        if prctl is None:
            return
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return in_child


async def watch_parent(stop: Callable[[], None]) -> None:
    """Beside the parent-death signal, for a child of `refit run`: once the parent is gone
    (this process was re-parented), stop as on SIGTERM, and exit if that has not ended the
    process soon after. Returns at once in a process nobody supervises."""
    expected = os.environ.get(PARENT_VARIABLE)
    if not expected:
        return
    # Polled: the kernel announces a parent's death only by a signal (handled as SIGTERM).
    while os.getppid() == int(expected):  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    log.warning("refit.parent_gone", parent=int(expected))
    stop()
    await asyncio.sleep(ORPHAN_EXIT_SECONDS)
    log.error("refit.orphan_exit")
    os._exit(1)
