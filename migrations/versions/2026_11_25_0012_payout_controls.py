"""Payout controls: a payout over the per-payout cap waits for a second admin's approval, and
the daily cap counts what was signed today.

- `status` may be `awaiting_approval` (no job until approved); `approved_by` is the admin who
  approved it (never the one who asked).
- `signed_at`: when its first transaction was signed, the day it counts against the daily cap.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
ALTER TABLE payouts
  ADD COLUMN approved_by text,
  ADD COLUMN signed_at timestamptz,
  DROP CONSTRAINT ck_payouts_status,
  ADD CONSTRAINT ck_payouts_status CHECK (status IN (
    'awaiting_approval', 'pending', 'signed', 'sent', 'finalized', 'failed')),
  DROP CONSTRAINT ck_payouts_signed_before_sent,
  ADD CONSTRAINT ck_payouts_signed_before_sent CHECK (
    status IN ('awaiting_approval', 'pending', 'failed')
    OR (signed_tx IS NOT NULL AND signature IS NOT NULL
        AND last_valid_block_height IS NOT NULL AND lamports IS NOT NULL));
CREATE INDEX ix_payouts_signed_at ON payouts (signed_at);
"""

DOWNGRADE = """
DROP INDEX ix_payouts_signed_at;
UPDATE payouts SET status = 'failed' WHERE status = 'awaiting_approval';
ALTER TABLE payouts
  DROP CONSTRAINT ck_payouts_signed_before_sent,
  ADD CONSTRAINT ck_payouts_signed_before_sent CHECK (
    status IN ('pending', 'failed')
    OR (signed_tx IS NOT NULL AND signature IS NOT NULL
        AND last_valid_block_height IS NOT NULL AND lamports IS NOT NULL)),
  DROP CONSTRAINT ck_payouts_status,
  ADD CONSTRAINT ck_payouts_status CHECK (status IN (
    'pending', 'signed', 'sent', 'finalized', 'failed')),
  DROP COLUMN signed_at,
  DROP COLUMN approved_by;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
