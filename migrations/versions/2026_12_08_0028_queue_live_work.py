"""The queue's open orders by an index of their own (issue 24, found in review): every queue
tab polls its page and its filter counts each second, and both read only orders not final
(or flagged). Over the (status_changed_at, id) index of 0027 the first page of open work had
to walk past every finished order older than it; this partial index holds the open ones only,
and its predicate is the one `dashboard.work.live_work()` writes into those queries, so the
planner proves it usable.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_orders_live_work ON orders (status_changed_at, id)"
        " WHERE (status NOT IN ('cancelled', 'completed', 'imported')"
        " OR attention_reason IS NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_orders_live_work")
