"""Returns: the label that takes a device home, and its tracking told apart from the inbound.

- `shipping_returns`: one per order, the label home (bought exactly once by the return job:
  the row is written before the carrier is called, the transaction id before it is waited
  on), its insurance and signature, tracking number, stored label, and whether the carrier
  delivered it. The service's alone (the seller hears of it by email and sees its tracking
  events).
- `shipping_events.leg`: `inbound` (to the warehouse) or `return` (home), part of the unique
  key, so the return's DELIVERED never collides with the inbound one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE shipping_returns (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  status text NOT NULL DEFAULT 'started',
  carrier_name text,
  rate_id text,
  carrier text,
  service text,
  cost numeric(10, 2),
  insured_usd numeric(10, 2),
  signature boolean NOT NULL DEFAULT false,
  transaction_id text,
  tracking_number text,
  label_file_key text,
  label_url text,
  error text,
  attempted_at timestamptz,
  purchased_at timestamptz,
  delivered_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT uq_shipping_returns_order_id UNIQUE (order_id),
  CONSTRAINT ck_shipping_returns_status CHECK (status IN (
    'started', 'pending', 'purchased', 'failed', 'delivered')),
  CONSTRAINT ck_shipping_returns_cost_not_negative CHECK (cost >= 0),
  CONSTRAINT ck_shipping_returns_insured_not_negative CHECK (insured_usd >= 0)
);
-- Carrier webhooks find the return parcel by its number.
CREATE UNIQUE INDEX uq_shipping_returns_tracking_number ON shipping_returns (tracking_number)
  WHERE tracking_number IS NOT NULL;
CREATE TRIGGER shipping_returns_set_updated_at BEFORE UPDATE ON shipping_returns
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
ALTER TABLE shipping_returns ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON shipping_returns FROM anon, authenticated;

ALTER TABLE shipping_events ADD COLUMN leg text NOT NULL DEFAULT 'inbound',
  ADD CONSTRAINT ck_shipping_events_leg CHECK (leg IN ('inbound', 'return'));
ALTER TABLE shipping_events DROP CONSTRAINT uq_shipping_events_order_status_occurred;
ALTER TABLE shipping_events ADD CONSTRAINT uq_shipping_events_order_leg_status_occurred
  UNIQUE NULLS NOT DISTINCT (order_id, leg, status, occurred_at);
"""

DOWNGRADE = """
DELETE FROM shipping_events WHERE leg = 'return';
ALTER TABLE shipping_events DROP CONSTRAINT uq_shipping_events_order_leg_status_occurred;
ALTER TABLE shipping_events ADD CONSTRAINT uq_shipping_events_order_status_occurred
  UNIQUE NULLS NOT DISTINCT (order_id, status, occurred_at);
ALTER TABLE shipping_events DROP CONSTRAINT ck_shipping_events_leg, DROP COLUMN leg;
DROP TABLE shipping_returns;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
