"""The treasury's balance, read by the worker on a schedule (issue 23): `treasury_readings`.

The API and the dashboard no longer ask the RPC (nor open the treasury's keypair to learn its
address): the worker reads the balance every minute and stores it here; the payouts page and
the `refit_treasury_balance_lamports` gauge show the newest row. A system table, as
`sweep_attempts` (0020): RLS on with no policy and every privilege revoked from
`anon`/`authenticated`.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE treasury_readings (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  at timestamptz NOT NULL DEFAULT now(),
  pubkey text NOT NULL,
  lamports bigint NOT NULL,
  slot bigint NOT NULL,
  CONSTRAINT pk_treasury_readings PRIMARY KEY (id),
  CONSTRAINT ck_treasury_readings_lamports CHECK (lamports >= 0)
);
CREATE INDEX ix_treasury_readings_at ON treasury_readings (at);
ALTER TABLE treasury_readings ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON treasury_readings FROM anon, authenticated;
""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS treasury_readings")
