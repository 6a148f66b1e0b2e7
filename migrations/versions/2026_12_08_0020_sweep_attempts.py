"""The sweeps count their re-queues (issue 22): `sweep_attempts`, one row per job and swept row
(an order's label, an order's return label, a payout, a carrier webhook).

Each periodic sweep gives a row whose job died the job again (refit/sweeps.py); here it counts
how often. Past REFIT_SWEEP_MAX_ATTEMPTS it stops, sets `gave_up_at` and flags the row for an
operator, so a row that keeps failing (a payout held for good) is not re-run for ever.
A system table, as `revoked_tokens` (0015): RLS on with no policy and every privilege revoked
from `anon`/`authenticated`.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE sweep_attempts (
  task text NOT NULL,
  row_id uuid NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  gave_up_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_sweep_attempts PRIMARY KEY (task, row_id),
  CONSTRAINT ck_sweep_attempts_attempts CHECK (attempts >= 0)
);
CREATE TRIGGER sweep_attempts_set_updated_at BEFORE UPDATE ON sweep_attempts
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
ALTER TABLE sweep_attempts ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON sweep_attempts FROM anon, authenticated;
""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS sweep_attempts")
