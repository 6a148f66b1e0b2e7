"""A worker's next job without reading the whole queue (issue 25, found measuring label jobs
behind a backlog).

procrastinate's worker fetches its jobs one after another, each with
`procrastinate_fetch_job_v2`: the first waiting job, in priority and id order, that no other job
of its lock is running or waiting ahead of. Walking the (priority, id) index of waiting jobs
and stopping at the first free one costs the same behind 10 jobs or 100,000. But when the
table's statistics say the queue is nearly empty (a new database, or one last analyzed when
it was idle, and a burst since), and whenever PostgreSQL settles on one generic plan for the
function, the planner takes every waiting job instead, checks each one's lock and sorts them:
behind 2,000 waiting label jobs a fetch took 40-56 ms instead of under 1 ms, the worker ran
about one job at a time, and the longer the backlog the slower it drained. Sorting and bitmap
scans are of no use to this statement, so they are off for the function alone.

Each lock check ("no other job of this lock is running or ahead") looked the lock up in
procrastinate's (id, lock) index, whose leading column is the id, so it read that whole index;
the partial index below holds only waiting and running jobs that have a lock, keyed by the
lock (its predicate is implied by the check).

procrastinate is pinned (uv.lock); a revision that applies its migrations must keep the
function's settings (a CREATE OR REPLACE drops them): tests/foundation/test_queue_fetch.py.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FETCH_JOB = "procrastinate_fetch_job_v2(character varying[], bigint)"


def upgrade() -> None:
    op.execute(f"ALTER FUNCTION {FETCH_JOB} SET enable_sort = off")
    op.execute(f"ALTER FUNCTION {FETCH_JOB} SET enable_bitmapscan = off")
    op.execute(
        "CREATE INDEX ix_procrastinate_jobs_lock_waiting ON procrastinate_jobs (lock)"
        " WHERE status IN ('todo', 'doing') AND lock IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_procrastinate_jobs_lock_waiting")
    op.execute(f"ALTER FUNCTION {FETCH_JOB} RESET enable_sort")
    op.execute(f"ALTER FUNCTION {FETCH_JOB} RESET enable_bitmapscan")
