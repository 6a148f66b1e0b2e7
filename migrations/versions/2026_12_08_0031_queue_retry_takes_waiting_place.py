"""A job retried while another of its queueing lock waits takes that one's place (found by the
red team on the label job, issue 25's eighth round).

A queueing lock keeps one waiting job per piece of work (`purchase-label:<order>`, a payout's
`payout:<order>`), and a job may be deferred while one of its lock runs: a carrier's webhook
makes the label job due now (follow_ups.defer_now), an operator asks for a label again. When
the running one then failed and was to be retried, procrastinate's retry put it back to
'todo' beside the waiting one, which its unique index on waiting jobs refused: the retry
raised, the job stayed 'doing' for good, the waiting one was blocked behind its `lock`, the
sweep saw a live job and the stalled-job retry hit the same refusal every minute. The order
stayed where it was until someone wrote SQL.

Both jobs of one queueing lock do the same work (the lock names it), so the retry of a running
job (a failed attempt, or the stalled-job sweep's) takes the waiting job's place: the waiting
one is cancelled, and the retry keeps its attempts and is due at the earlier of its backoff
and the waiting job's time (a webhook's "due now" still counts). An operator's retry of a job
that failed for good is left as it was: with one of its work waiting, the jobs page answers
409 "already waiting" (tests/security/test_dashboard_attacks.py). A trigger of ours, not a
change to procrastinate's functions, which its migrations replace.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION refit_retry_takes_waiting_place() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            waiting_at timestamptz;
        BEGIN
            UPDATE procrastinate_jobs SET status = 'cancelled'
            WHERE queueing_lock = NEW.queueing_lock AND status = 'todo' AND id <> NEW.id
            RETURNING scheduled_at INTO waiting_at;
            IF FOUND THEN
                -- NULL is "due now", for either of the two.
                NEW.scheduled_at := CASE
                    WHEN waiting_at IS NULL OR NEW.scheduled_at IS NULL THEN NULL
                    ELSE least(waiting_at, NEW.scheduled_at)
                END;
            END IF;
            RETURN NEW;
        END;
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER refit_retry_takes_waiting_place
        BEFORE UPDATE OF status ON procrastinate_jobs
        FOR EACH ROW
        WHEN (OLD.status = 'doing' AND NEW.status = 'todo' AND NEW.queueing_lock IS NOT NULL)
        EXECUTE FUNCTION refit_retry_takes_waiting_place()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS refit_retry_takes_waiting_place ON procrastinate_jobs")
    op.execute("DROP FUNCTION IF EXISTS refit_retry_takes_waiting_place()")
