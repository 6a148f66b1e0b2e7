"""The process's flags, in memory, kept current by PostgreSQL notifications; and its exposure
counts, added to the database every few seconds.

Why PostgreSQL's NOTIFY and not Redis pub/sub (which the revocation watch uses): a flag lives
in PostgreSQL, and `set_flag` sends `pg_notify` in the transaction that changes it, so the
notification is delivered exactly when the change commits, never before (a process re-reading
early would keep the old flag) and never for a change rolled back. `refit flags` needs no
Redis, and no change can be committed with its publish lost to a crash in between. It costs
no connection of its own: the channel is followed on the process's one LISTEN connection
(refit/listen.py).

As with the order events, a notification is only a wake-up: the follower re-reads the whole
(small) table on that connection. The listener LISTENs before the read it runs after every
(re)connect, so a change committed in between is read or notified, never neither; and the
follower re-reads every RELOAD_SECONDS anyway. While it is not live (starting, the database
gone, a re-read failed) `refit.flags.evaluate` reads the table itself, at most once a second.

Exposures are counted in a dict here, on the request's path, and added to
feature_flag_exposures in one upsert every FLUSH_SECONDS: a request pays no round trip for
them (a HINCRBY would be one per request), the database sees one statement per process every
few seconds, and a process killed outright loses at most those seconds' counts, which a test
read over days does not notice. A graceful stop writes what is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import psycopg
import structlog

from refit.flags.rules import FlagRule
from refit.flags.service import FLAGS_CHANNEL, RULES_SQL, rule_from_row
from refit.listen import Listener, ListenerDown
from refit.log_setup import describe_error
from refit.started import Started

log = structlog.get_logger(__name__)

# The short connection of the last exposure write, when the listener's is gone.
FLUSH_APPLICATION_NAME = "refit-flags-flush"
FLUSH_SECONDS = 2.0
RELOAD_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 10
QUERY_TIMEOUT_SECONDS = 10.0
STOP_SECONDS = 2.0

_FLUSH_SQL = """
INSERT INTO feature_flag_exposures (flag_id, variant, exposures)
SELECT f.id, c.variant, c.n
FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS c(name, variant, n)
JOIN feature_flags f ON f.name = c.name
ON CONFLICT (flag_id, variant) DO UPDATE
SET exposures = feature_flag_exposures.exposures + EXCLUDED.exposures, updated_at = now()
"""

Connection = psycopg.AsyncConnection[Any]


class FlagFollower:
    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self.rules: Mapping[str, FlagRule] = {}
        # Not known to be current: nothing read yet on this connection, or a re-read failed.
        self._stale = True
        self._stopped = False
        self._changed = asyncio.Event()
        self._pending: Counter[tuple[str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None
        listener.listen(FLAGS_CHANNEL, self._notified, on_connect=self._connected)

    @property
    def live(self) -> bool:
        return self._listener.live and not self._stale and not self._stopped

    def count_exposure(self, flag: str, variant: str) -> None:
        self._pending[(flag, variant)] += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="flags.follower")

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_SECONDS)
        # Bounded: a database that does not answer costs these counts, not the shutdown.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._last_flush(), STOP_SECONDS)

    def _notified(self, payload: str) -> None:
        self._changed.set()

    async def _connected(self, connection: Connection) -> None:
        self._stale = True
        await self._load(connection)
        log.info("flags.follower_live", flags=len(self.rules))

    async def _run(self) -> None:
        """Re-read on a notification and every RELOAD_SECONDS, write the exposures every
        FLUSH_SECONDS, on the listener's connection; while it is down, the next (re)connect
        re-reads and the counts wait."""
        clock = asyncio.get_running_loop().time
        loaded = flushed = clock()
        while not self._stopped:
            due = min(loaded + RELOAD_SECONDS, flushed + FLUSH_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(due - clock(), 0))
            now = clock()
            if self._changed.is_set() or now - loaded >= RELOAD_SECONDS:
                self._changed.clear()
                loaded = now
                if not await self._on_connection(self._load, "flags.reload_failed"):
                    self._stale = True
            if now - flushed >= FLUSH_SECONDS:
                flushed = now
                if self._pending:
                    await self._on_connection(self._flush, "flags.flush_failed")

    async def _on_connection(
        self, work: Callable[[Connection], Awaitable[None]], failed: str
    ) -> bool:
        try:
            await self._listener.run(work)
        except ListenerDown:
            return False  # the next (re)connect re-reads
        except Exception as exc:
            log.warning(failed, error=describe_error(exc))
            return False
        return True

    async def _load(self, connection: Connection) -> None:
        cursor = await asyncio.wait_for(connection.execute(RULES_SQL), QUERY_TIMEOUT_SECONDS)
        self.rules = {row[0]: rule_from_row(*row) for row in await cursor.fetchall()}
        self._stale = False

    async def _flush(self, connection: Connection) -> None:
        if not self._pending:
            return
        taken, self._pending = self._pending, Counter()
        names, variants, counts = [], [], []
        for (name, variant), count in taken.items():
            names.append(name)
            variants.append(variant)
            counts.append(count)
        try:
            await asyncio.wait_for(
                connection.execute(_FLUSH_SQL, (names, variants, counts)), QUERY_TIMEOUT_SECONDS
            )
        except BaseException:
            # Not written (or not known to be): kept for the next flush. A timeout after the
            # server applied it would count twice; that is rarer than losing them, and visible.
            self._pending.update(taken)
            raise

    async def _last_flush(self) -> None:
        """What is pending, written on the way out: on the listener's connection while it is
        up (after any write it is doing for us), else on a connection of its own."""
        if self._listener.live:
            with contextlib.suppress(Exception):
                await self._listener.run(self._flush)
                return
        if self._pending:
            async with await psycopg.AsyncConnection.connect(
                self._listener.url,
                autocommit=True,
                application_name=FLUSH_APPLICATION_NAME,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
            ) as connection:
                await self._flush(connection)


_followers: Started[FlagFollower] = Started()


def current_follower() -> FlagFollower | None:
    return _followers.current()


async def start_follower(listener: Listener) -> FlagFollower:
    """Start following the flags in this process (the API's lifespan), on its listener:
    registered before the listener starts."""
    follower = FlagFollower(listener)
    _followers.add(follower).start()
    return follower


async def stop_follower(follower: FlagFollower) -> None:
    _followers.remove(follower)
    await follower.stop()
