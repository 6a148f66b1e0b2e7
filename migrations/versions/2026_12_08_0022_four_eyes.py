"""Four-eyes that holds against one person (issue 23): who made each operator, who let a new
admin work, and an `operator_audit` trail.

- `operators.created_by`: the actor who made the row ("operator:<id>" through the API or the
  dashboard, "cli:<login>" from `refit operator create` or `refit run`'s first admin). NULL for
  the operators that predate this record.
- `operators.approved_by` / `approved_at`: an admin made by another admin works only once a
  second, older admin approved it (refit/admin/four_eyes.py). Every other operator is approved
  as it is made; those that predate this migration count as approved when they were created.
- `operator_audit`: one row per admin creation, approval, disabling and four-eyes refusal
  (refit/admin/audit.py, its one writer). Never updated. A system table, as `sweep_attempts`
  (0020): RLS on with no policy and every privilege revoked from `anon`/`authenticated`.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
ALTER TABLE operators
  ADD COLUMN created_by text,
  ADD COLUMN approved_by text,
  ADD COLUMN approved_at timestamptz;
UPDATE operators SET approved_at = created_at;

CREATE TABLE operator_audit (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  at timestamptz NOT NULL DEFAULT now(),
  actor text NOT NULL,
  action text NOT NULL,
  subject text NOT NULL,
  outcome text NOT NULL,
  detail jsonb NOT NULL DEFAULT '{}',
  CONSTRAINT ck_operator_audit_outcome CHECK (outcome IN ('done', 'refused'))
);
CREATE INDEX ix_operator_audit_subject_at ON operator_audit (subject, at);
ALTER TABLE operator_audit ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON operator_audit FROM anon, authenticated;
""")


def downgrade() -> None:
    op.execute("""
DROP TABLE IF EXISTS operator_audit;
ALTER TABLE operators
  DROP COLUMN IF EXISTS approved_at,
  DROP COLUMN IF EXISTS approved_by,
  DROP COLUMN IF EXISTS created_by;
""")
