"""Resilience (issue 15): revoked access tokens kept in PostgreSQL.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25

`revoked_tokens` is the record of sign-outs: one row per revoked token (its `jti`) until the
token would have expired anyway. Redis only carries it to the API processes (a key and a
publish) and can lose it; each process loads the live rows from here when it (re)subscribes.
A system table: written by the service role at sign-out; RLS on with no policy and every
privilege revoked from `anon`/`authenticated` (Supabase's defaults grant new tables to them),
so a seller's own SQL can neither read nor undo a revocation.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE revoked_tokens (
  jti text NOT NULL,
  user_id uuid NOT NULL,
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_revoked_tokens PRIMARY KEY (jti),
  CONSTRAINT fk_revoked_tokens_user_id_users FOREIGN KEY (user_id)
    REFERENCES users (id) ON DELETE CASCADE
);
-- Loading the live revocations and pruning the dead ones both go by expiry.
CREATE INDEX ix_revoked_tokens_expires_at ON revoked_tokens (expires_at);
ALTER TABLE revoked_tokens ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON revoked_tokens FROM anon, authenticated;
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS revoked_tokens")
