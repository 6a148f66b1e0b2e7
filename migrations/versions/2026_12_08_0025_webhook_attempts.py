"""Webhooks count their failed handlings (issue 24), and the audit trail page reads newest first.

`webhook_inbox.attempts` counts the runs of `shipping.handle_webhook` that raised, with the
last one's error and time (`last_error`, `last_attempt_at`). Past REFIT_WEBHOOK_MAX_ATTEMPTS
the row is given up on (its `sweep_attempts` row marked, as the sweeps do, and `error` set for
an operator), so a body whose handler keeps failing is no longer re-queued every 5 minutes
for ever; replaying it from the dashboard starts the count again.

The indexes serve the dashboard's audit trail, paged newest first over the three places an
operator's acts are written (operator_audit, feature_flag_audit, order_status_history).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
ALTER TABLE webhook_inbox
  ADD COLUMN attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN last_error text,
  ADD COLUMN last_attempt_at timestamptz,
  ADD CONSTRAINT ck_webhook_inbox_attempts CHECK (attempts >= 0);
CREATE INDEX ix_operator_audit_at ON operator_audit (at, id);
CREATE INDEX ix_feature_flag_audit_created_at ON feature_flag_audit (created_at, id);
CREATE INDEX ix_order_status_history_operator_created_at
  ON order_status_history (created_at, id) WHERE actor LIKE 'operator:%';
""")


def downgrade() -> None:
    op.execute("""
DROP INDEX IF EXISTS ix_order_status_history_operator_created_at;
DROP INDEX IF EXISTS ix_feature_flag_audit_created_at;
DROP INDEX IF EXISTS ix_operator_audit_at;
ALTER TABLE webhook_inbox
  DROP CONSTRAINT IF EXISTS ck_webhook_inbox_attempts,
  DROP COLUMN IF EXISTS last_attempt_at,
  DROP COLUMN IF EXISTS last_error,
  DROP COLUMN IF EXISTS attempts;
""")
