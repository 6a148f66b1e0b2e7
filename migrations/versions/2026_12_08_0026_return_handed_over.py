"""The parcel home handed to the carrier (issue 24): when, and by which operator, on the
order's `shipping_returns` row. A mark, not an order status: the carrier's scans and its
delivery move the order on (returning → cancelled).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
ALTER TABLE shipping_returns
  ADD COLUMN handed_over_at timestamptz,
  ADD COLUMN handed_over_by text,
  ADD CONSTRAINT ck_shipping_returns_handed_over
    CHECK ((handed_over_at IS NULL) = (handed_over_by IS NULL));
""")


def downgrade() -> None:
    op.execute("""
ALTER TABLE shipping_returns
  DROP CONSTRAINT ck_shipping_returns_handed_over,
  DROP COLUMN handed_over_by,
  DROP COLUMN handed_over_at;
""")
