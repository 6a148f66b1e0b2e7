"""A payout's state machine (issue 23): the statuses `held` (with its `hold_reason`) and
`cancelled`, and `payout_events`, the audit trail of every status or error write (who, why,
the chain's evidence), written only by refit/payouts/states.py.

Before this, "already on chain" was a pending row whose error began with the words; those rows
become `held` (reason `already_on_chain`), with an event saying the migration moved them.
A system table, as `sweep_attempts` (0020): RLS on with no policy and every privilege revoked
from `anon`/`authenticated`.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# refit.metrics.PAYOUT_HELD_ALREADY_ON_CHAIN, as it was written (a migration is frozen).
ALREADY_ON_CHAIN = "a transfer for this order is already on chain"


def upgrade() -> None:
    op.execute("""
ALTER TABLE payouts
  ADD COLUMN hold_reason text,
  DROP CONSTRAINT ck_payouts_status,
  ADD CONSTRAINT ck_payouts_status CHECK (status IN (
    'awaiting_approval', 'pending', 'signed', 'sent', 'finalized', 'failed', 'held',
    'cancelled')),
  ADD CONSTRAINT ck_payouts_hold_reason CHECK (
    (status = 'held') = (hold_reason IS NOT NULL)
    AND (hold_reason IS NULL
         OR hold_reason IN ('already_on_chain', 'sanctions', 'sanctions_list_stale'))),
  DROP CONSTRAINT ck_payouts_signed_before_sent,
  -- A payout resolved from a hold records the transfer found on chain: its signature and
  -- lamports; the stored bytes and their blockhash's height are those of one we signed.
  ADD CONSTRAINT ck_payouts_signed_before_sent CHECK (
    status IN ('awaiting_approval', 'pending', 'failed', 'held', 'cancelled')
    OR (status = 'finalized' AND signature IS NOT NULL AND lamports IS NOT NULL)
    OR (signed_tx IS NOT NULL AND signature IS NOT NULL
        AND last_valid_block_height IS NOT NULL AND lamports IS NOT NULL));

CREATE TABLE payout_events (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  payout_id uuid NOT NULL,
  from_status text,
  to_status text NOT NULL,
  actor text NOT NULL,
  reason text,
  evidence jsonb NOT NULL DEFAULT '{}',
  at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_payout_events PRIMARY KEY (id),
  CONSTRAINT fk_payout_events_payout_id_payouts FOREIGN KEY (payout_id)
    REFERENCES payouts (id) ON DELETE RESTRICT
);
CREATE INDEX ix_payout_events_payout_id ON payout_events (payout_id);
ALTER TABLE payout_events ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON payout_events FROM anon, authenticated;
""")
    op.execute(f"""
WITH moved AS (
  UPDATE payouts SET status = 'held', hold_reason = 'already_on_chain'
  WHERE status = 'pending' AND starts_with(error, '{ALREADY_ON_CHAIN}')
  RETURNING id, error)
INSERT INTO payout_events (payout_id, from_status, to_status, actor, reason)
SELECT id, 'pending', 'held', 'system:migration-0021', error FROM moved;
""")  # noqa: S608 (a constant of this file)


def downgrade() -> None:
    op.execute("""
DROP TABLE IF EXISTS payout_events;
UPDATE payouts SET status = 'pending' WHERE status = 'held';
-- A resolved payout has no bytes we signed: the old rule cannot hold it (as a restore would).
UPDATE payouts SET signed_tx = '\\x00'::bytea, last_valid_block_height = 0
  WHERE status = 'finalized' AND signed_tx IS NULL;
UPDATE payouts SET status = 'failed' WHERE status = 'cancelled';
ALTER TABLE payouts
  DROP CONSTRAINT ck_payouts_signed_before_sent,
  ADD CONSTRAINT ck_payouts_signed_before_sent CHECK (
    status IN ('awaiting_approval', 'pending', 'failed')
    OR (signed_tx IS NOT NULL AND signature IS NOT NULL
        AND last_valid_block_height IS NOT NULL AND lamports IS NOT NULL)),
  DROP CONSTRAINT ck_payouts_hold_reason,
  DROP CONSTRAINT ck_payouts_status,
  ADD CONSTRAINT ck_payouts_status CHECK (status IN (
    'awaiting_approval', 'pending', 'signed', 'sent', 'finalized', 'failed')),
  DROP COLUMN hold_reason;
""")
