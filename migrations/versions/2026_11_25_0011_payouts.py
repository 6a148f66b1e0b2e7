"""Payouts: one per order, the SOL transfer that pays the seller, exactly once.

- `payouts`: one row per order (unique), written by the pay request before any signing;
  the job records the rate and lamports, then the signed transaction, its signature and last
  valid block height BEFORE it is broadcast, so a retry re-sends the same bytes and a new
  transaction is signed only once the chain shows the first can never land. `reference` is a
  per-order public key carried by the transfer (read-only, non-signer): the chain alone
  answers "did we pay this order?" (getSignaturesForAddress). Written by the service; the
  order's seller may read what their order detail shows of it (RLS, and only those columns:
  not the signed bytes, the operator or the errors).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE payouts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  order_id uuid NOT NULL REFERENCES orders (id) ON DELETE RESTRICT,
  status text NOT NULL DEFAULT 'pending',
  amount_usd numeric(10, 2) NOT NULL,
  amount_sol numeric(10, 4),
  sol_usd_rate numeric(20, 8),
  rate_source text,
  rate_at timestamptz,
  lamports bigint,
  recipient text NOT NULL,
  treasury text NOT NULL,
  reference text NOT NULL,
  signed_tx bytea,
  signature text,
  last_valid_block_height bigint,
  attempts integer NOT NULL DEFAULT 0,
  requested_by text NOT NULL,
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finalized_at timestamptz,
  CONSTRAINT uq_payouts_order_id UNIQUE (order_id),
  CONSTRAINT uq_payouts_reference UNIQUE (reference),
  CONSTRAINT ck_payouts_status CHECK (status IN (
    'pending', 'signed', 'sent', 'finalized', 'failed')),
  CONSTRAINT ck_payouts_amount_usd_positive CHECK (amount_usd > 0),
  CONSTRAINT ck_payouts_lamports_positive CHECK (lamports > 0),
  -- Nothing is broadcast that was not stored first.
  CONSTRAINT ck_payouts_signed_before_sent CHECK (
    status IN ('pending', 'failed')
    OR (signed_tx IS NOT NULL AND signature IS NOT NULL
        AND last_valid_block_height IS NOT NULL AND lamports IS NOT NULL))
);
CREATE INDEX ix_payouts_status_updated_at ON payouts (status, updated_at);
CREATE TRIGGER payouts_set_updated_at BEFORE UPDATE ON payouts
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
ALTER TABLE payouts ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON payouts FROM anon, authenticated;
GRANT SELECT (id, order_id, status, amount_usd, amount_sol, lamports, signature, created_at,
  finalized_at) ON payouts TO authenticated;
CREATE POLICY payouts_select_own ON payouts FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM orders o WHERE o.id = order_id
                 AND o.user_id = (SELECT auth.uid())));
"""

DOWNGRADE = """
DROP TABLE payouts;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
