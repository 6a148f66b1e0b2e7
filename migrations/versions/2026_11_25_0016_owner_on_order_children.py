"""The seller's id on the tables a seller reads beside an order (inspections, evidence_photos,
payouts), so their RLS policies compare a column instead of joining orders.

Why: the seller's order read is one simple-protocol query, planned on every request. With
each policy an `EXISTS (SELECT 1 FROM orders ...)`, its plan grew to 28 subplans and planning
took 1.3-1.8 ms against 0.4 ms without them (docs/capacity.md). `user_id = (SELECT auth.uid())`
is one init plan per table, the pattern Supabase recommends for policies.

Writers do not change: a BEFORE INSERT trigger copies the order's seller (an order never
changes hands), and the column is NOT NULL so a row can never be left unowned. A policy reads
the column without the seller being granted it (payouts' columns stay granted one by one).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("inspections", "evidence_photos", "payouts")

FUNCTION = """
CREATE FUNCTION refit_owner_of_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  SELECT o.user_id INTO NEW.user_id FROM orders o WHERE o.id = NEW.order_id;
  RETURN NEW;
END $$;
"""


def _upgrade_table(table: str) -> str:
    return f"""
ALTER TABLE {table} ADD COLUMN user_id uuid;
UPDATE {table} t SET user_id = o.user_id FROM orders o WHERE o.id = t.order_id;
ALTER TABLE {table} ALTER COLUMN user_id SET NOT NULL;
CREATE TRIGGER {table}_owner BEFORE INSERT ON {table}
  FOR EACH ROW EXECUTE FUNCTION refit_owner_of_order();
DROP POLICY {table}_select_own ON {table};
CREATE POLICY {table}_select_own ON {table} FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
"""  # noqa: S608 (DDL for table names listed in this file)


def _downgrade_table(table: str) -> str:
    return f"""
DROP POLICY {table}_select_own ON {table};
CREATE POLICY {table}_select_own ON {table} FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM orders o WHERE o.id = order_id
                 AND o.user_id = (SELECT auth.uid())));
DROP TRIGGER {table}_owner ON {table};
ALTER TABLE {table} DROP COLUMN user_id;
"""  # noqa: S608 (DDL for table names listed in this file)


def upgrade() -> None:
    op.execute(FUNCTION)
    for table in _TABLES:
        op.execute(_upgrade_table(table))


def downgrade() -> None:
    for table in _TABLES:
        op.execute(_downgrade_table(table))
    op.execute("DROP FUNCTION refit_owner_of_order()")
