"""Carrier webhooks: an inbox that keeps each event once; tracking events unique per order;
orders a carrier event flagged for an operator.

- `webhook_inbox`: every verified webhook body, once per event (`provider`, `dedupe_key`); a
  body we could not parse is kept with its error for an operator. The service's alone.
- `shipping_events`: one row per (order, status, moment), enforced by the database too.
- `orders.attention_reason` / `attention_at`: set when something needs a person (a parcel
  returned to sender, a carrier failure, a delivery to the wrong place).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE webhook_inbox (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider text NOT NULL,
  event text,
  dedupe_key text NOT NULL,
  test boolean,
  body jsonb,
  raw_body text,
  error text,
  order_id uuid REFERENCES orders (id) ON DELETE SET NULL,
  outcome text,
  received_at timestamptz NOT NULL DEFAULT now(),
  processed_at timestamptz,
  CONSTRAINT uq_webhook_inbox_provider_dedupe_key UNIQUE (provider, dedupe_key)
);
CREATE INDEX ix_webhook_inbox_unprocessed ON webhook_inbox (received_at)
  WHERE processed_at IS NULL;
ALTER TABLE webhook_inbox ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON webhook_inbox FROM anon, authenticated;

DELETE FROM shipping_events a USING shipping_events b
  WHERE a.order_id = b.order_id AND a.status = b.status
    AND a.occurred_at IS NOT DISTINCT FROM b.occurred_at AND a.created_at > b.created_at;
ALTER TABLE shipping_events ADD CONSTRAINT uq_shipping_events_order_status_occurred
  UNIQUE NULLS NOT DISTINCT (order_id, status, occurred_at);

ALTER TABLE orders ADD COLUMN attention_reason text, ADD COLUMN attention_at timestamptz;
CREATE INDEX ix_orders_attention ON orders (attention_at) WHERE attention_reason IS NOT NULL;
"""

DOWNGRADE = """
DROP INDEX ix_orders_attention;
ALTER TABLE orders DROP COLUMN attention_reason, DROP COLUMN attention_at;
ALTER TABLE shipping_events DROP CONSTRAINT uq_shipping_events_order_status_occurred;
DROP TABLE webhook_inbox;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
