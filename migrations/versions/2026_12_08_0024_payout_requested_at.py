"""payouts.requested_at: when the payout was last asked for (issue 23's four-eyes, from the
red team). A cancelled payout paid again keeps its row and its `created_at`, and four-eyes
measured "the approver existed before the request" against that first request; it now
measures against the request being approved. Existing rows take their `created_at`.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE payouts ADD COLUMN requested_at timestamptz")
    op.execute("UPDATE payouts SET requested_at = created_at")
    op.execute(
        "ALTER TABLE payouts ALTER COLUMN requested_at SET DEFAULT now(),"
        " ALTER COLUMN requested_at SET NOT NULL"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE payouts DROP COLUMN requested_at")
