"""When an operator last signed out of the dashboard: every dashboard session issued before
it is refused. The record is PostgreSQL, read with the operator's row that each dashboard
request loads anyway, so a sign-out survives Redis losing its data (it was a Redis key).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE operators ADD COLUMN dashboard_signed_out_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE operators DROP COLUMN dashboard_signed_out_at")
