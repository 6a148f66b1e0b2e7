"""Operator accounts: who acts under /api/admin, each with a password of their own and a role.

- `operators`: one row per person (`inspector` or `admin`); the username is stored lower-cased
  and limited to a plain charset, the password as an argon2id hash. A disabled operator keeps
  the row (history names them as `operator:<id>`) and can no longer sign in or use a token.
  The service's alone: neither `anon` nor `authenticated` may read a hash.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE operators (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  username text NOT NULL,
  password_hash text NOT NULL,
  role text NOT NULL,
  disabled_at timestamptz,
  last_login_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT uq_operators_username UNIQUE (username),
  CONSTRAINT ck_operators_username CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,31}$'),
  CONSTRAINT ck_operators_role CHECK (role IN ('inspector', 'admin'))
);
CREATE TRIGGER operators_set_updated_at BEFORE UPDATE ON operators
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
ALTER TABLE operators ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON operators FROM anon, authenticated;
"""

DOWNGRADE = """
DROP TABLE operators;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
