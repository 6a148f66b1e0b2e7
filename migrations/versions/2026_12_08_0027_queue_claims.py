"""The warehouse queue (issue 24): when an order entered its status, and who claimed it.

`status_changed_at` is the queue's order ("longest waiting first") and its keyset cursor:
kept on the row by orders.service.transition (the one door of `status`), indexed with the id
so each page of the queue is an index range, not a sort of every open order. Filled here from
each order's newest history row (its creation when it has none).

`claimed_by`/`claimed_at`: the operator working on the order ("mine"), set and cleared by
refit/backoffice/claims.py, each claim recorded in `operator_audit`. An operator removed
leaves the order unclaimed (its `claimed_at` then only says when it was last claimed).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
ALTER TABLE orders
  ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN claimed_by uuid REFERENCES operators (id) ON DELETE SET NULL,
  ADD COLUMN claimed_at timestamptz;
UPDATE orders SET status_changed_at = coalesce(
  (SELECT max(h.created_at) FROM order_status_history h WHERE h.order_id = orders.id),
  orders.created_at);
ALTER TABLE orders ADD CONSTRAINT ck_orders_claim
  CHECK (claimed_by IS NULL OR claimed_at IS NOT NULL);
CREATE INDEX ix_orders_status_changed_at_id ON orders (status_changed_at, id);
CREATE INDEX ix_orders_claimed_by ON orders (claimed_by) WHERE claimed_by IS NOT NULL;
""")


def downgrade() -> None:
    op.execute("""
DROP INDEX IF EXISTS ix_orders_claimed_by;
DROP INDEX IF EXISTS ix_orders_status_changed_at_id;
ALTER TABLE orders
  DROP CONSTRAINT IF EXISTS ck_orders_claim,
  DROP COLUMN IF EXISTS claimed_at,
  DROP COLUMN IF EXISTS claimed_by,
  DROP COLUMN IF EXISTS status_changed_at;
""")
