"""Who owns an embedded server: the process holding the lock on its claim file.

The first `refit` process to need the embedded PostgreSQL (or Redis) of a data directory takes
an exclusive lock on `<server>.owner` there, starts the server, and writes its URL into the
file; it stops the server and lets go when it exits. Any other process finds the lock taken
and reads the URL: it connects and never starts or stops anything. The kernel drops the lock
of a process that dies however it dies, so a killed owner leaves no stale claim: the next
process takes it over (its server died with it, by the parent-death signal).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import IO, Any

WAIT_FOR_OWNER_SECONDS = 90.0


class Claim:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def take(self) -> bool:
        """Take the claim if nobody holds it: True when this process is now the owner."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Never through a symlink (one planted in a shared data directory would have us
        # truncate what it points to); held open, and locked, for the owner's lifetime.
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        handle = os.fdopen(descriptor, "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        # What a dead owner wrote is no longer true.
        handle.truncate(0)
        self._file = handle
        return True

    def publish(self, **facts: Any) -> None:
        assert self._file is not None, "only the owner publishes"
        self._file.seek(0)
        self._file.truncate(0)
        self._file.write(json.dumps({"pid": os.getpid(), **facts}))
        self._file.flush()

    def release(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            self._file.truncate(0)
        self._file.close()  # closing drops the lock
        self._file = None

    @property
    def owned(self) -> bool:
        return self._file is not None

    def read_owner(self) -> dict[str, Any] | None:
        """What the owner published, or None while it is still starting its server."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        try:
            facts = json.loads(text)
        except ValueError:  # read while being written
            return None
        # Only the lock holder writes here; anything else found is not an owner's word.
        if not isinstance(facts, dict) or not isinstance(facts.get("pid"), int):
            return None
        if not isinstance(facts.get("url"), str):
            return None
        return facts if _alive(facts["pid"]) else None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def own_or_find(claim: Claim, timeout: float = WAIT_FOR_OWNER_SECONDS) -> dict[str, Any] | None:
    """None: this process owns the server now and must start it. Otherwise the running
    owner's published facts (its URL), waiting while the owner is still starting it; the
    claim is taken over if the owner dies meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if claim.take():
            return None
        found = claim.read_owner()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"another refit process holds {claim.path} but has not started its server"
            )
        time.sleep(0.05)
