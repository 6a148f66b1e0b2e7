"""The database guards the one door; idempotency keys belong to whoever asked; tracking
events normalised when written.

- Sellers' role (`authenticated`) may only read orders, their history and quotes: status,
  prices and shipping columns are written by the service, after the service found the row
  under the seller's RLS (refit/db.py `as_service`). A seller's own SQL (e.g. through
  Supabase's Data API) can no longer move an order, forge a price or write history.
- Idempotency keys are keyed by a principal ("user:<uuid>", "operator:<name>") so an
  operator's request can carry one; the table is the service's alone.
- shipping_events gets the normalised status, substatus and ETA columns.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRACKING_STATUSES = ("UNKNOWN", "PRE_TRANSIT", "TRANSIT", "DELIVERED", "RETURNED", "FAILURE")

UPGRADE = f"""
REVOKE INSERT, UPDATE, DELETE ON orders FROM authenticated;
DROP POLICY orders_insert_own ON orders;
DROP POLICY orders_update_own ON orders;
REVOKE INSERT, UPDATE, DELETE ON order_status_history FROM authenticated;
DROP POLICY order_status_history_insert_own ON order_status_history;
REVOKE INSERT, UPDATE, DELETE ON quotes FROM authenticated;
DROP POLICY quotes_insert_own ON quotes;
REVOKE USAGE ON SEQUENCE order_number_seq FROM authenticated;

DROP POLICY idempotency_keys_select_own ON idempotency_keys;
DROP POLICY idempotency_keys_insert_own ON idempotency_keys;
DROP POLICY idempotency_keys_update_own ON idempotency_keys;
DROP POLICY idempotency_keys_delete_none ON idempotency_keys;
REVOKE ALL ON idempotency_keys FROM anon, authenticated;
ALTER TABLE idempotency_keys ADD COLUMN principal text;
UPDATE idempotency_keys SET principal = 'user:' || user_id;
ALTER TABLE idempotency_keys
  ALTER COLUMN principal SET NOT NULL,
  DROP CONSTRAINT uq_idempotency_keys_user_id,
  DROP CONSTRAINT fk_idempotency_keys_user_id_users,
  DROP COLUMN user_id,
  ADD CONSTRAINT uq_idempotency_keys_principal UNIQUE (principal, key);

ALTER TABLE shipping_events
  ADD COLUMN status text NOT NULL DEFAULT 'UNKNOWN',
  ADD COLUMN substatus text,
  ADD COLUMN eta timestamptz,
  ADD CONSTRAINT ck_shipping_events_status CHECK (status IN {TRACKING_STATUSES!r});
UPDATE shipping_events SET status = carrier_status
  WHERE carrier_status IN {TRACKING_STATUSES!r};
"""  # noqa: S608 (DDL from this file's constants)

DOWNGRADE = """
ALTER TABLE shipping_events DROP COLUMN status, DROP COLUMN substatus, DROP COLUMN eta;

DELETE FROM idempotency_keys WHERE principal NOT LIKE 'user:%';
ALTER TABLE idempotency_keys ADD COLUMN user_id uuid;
UPDATE idempotency_keys SET user_id = substr(principal, 6)::uuid;
ALTER TABLE idempotency_keys
  ALTER COLUMN user_id SET NOT NULL,
  DROP CONSTRAINT uq_idempotency_keys_principal,
  DROP COLUMN principal,
  ADD CONSTRAINT uq_idempotency_keys_user_id UNIQUE (user_id, key),
  ADD CONSTRAINT fk_idempotency_keys_user_id_users FOREIGN KEY (user_id) REFERENCES users (id)
    ON DELETE CASCADE;
GRANT SELECT, INSERT, UPDATE ON idempotency_keys TO authenticated;
CREATE POLICY idempotency_keys_select_own ON idempotency_keys FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY idempotency_keys_insert_own ON idempotency_keys FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY idempotency_keys_update_own ON idempotency_keys FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY idempotency_keys_delete_none ON idempotency_keys FOR DELETE TO authenticated
  USING (false);

GRANT USAGE ON SEQUENCE order_number_seq TO authenticated;
GRANT INSERT ON quotes TO authenticated;
CREATE POLICY quotes_insert_own ON quotes FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
GRANT INSERT ON order_status_history TO authenticated;
CREATE POLICY order_status_history_insert_own ON order_status_history FOR INSERT
  TO authenticated WITH CHECK (EXISTS (
    SELECT 1 FROM orders o WHERE o.id = order_id AND o.user_id = (SELECT auth.uid())));
GRANT INSERT, UPDATE ON orders TO authenticated;
CREATE POLICY orders_insert_own ON orders FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY orders_update_own ON orders FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
