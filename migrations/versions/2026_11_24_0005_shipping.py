"""Shipping: quoted rates per order, the label purchase log, the sandbox carrier's objects.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

All three are system tables written by the service role: no grant to `authenticated`, and RLS
enabled without policies so that a Supabase project (whose default privileges grant new
public tables to anon/authenticated) still refuses them to users.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
-- The rates we showed for an order: purchase-label only buys one of these (a client cannot
-- name an arbitrary rate object), while it is fresh and for the address it was quoted for.
CREATE TABLE shipping_rate_quotes (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  order_id uuid NOT NULL,
  rate_id text NOT NULL,
  carrier_name text NOT NULL,
  shipment_id text NOT NULL,
  carrier text NOT NULL,
  service text NOT NULL,
  service_token text,
  amount numeric(10, 2) NOT NULL,
  currency text NOT NULL,
  estimated_days integer,
  address_fingerprint text NOT NULL,
  quoted_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  CONSTRAINT pk_shipping_rate_quotes PRIMARY KEY (id),
  CONSTRAINT uq_shipping_rate_quotes_order_id UNIQUE (order_id, rate_id),
  CONSTRAINT fk_shipping_rate_quotes_order_id_orders FOREIGN KEY (order_id)
    REFERENCES orders (id) ON DELETE CASCADE,
  CONSTRAINT ck_shipping_rate_quotes_amount_not_negative CHECK (amount >= 0)
);

-- One row per attempt to buy a label, written BEFORE the carrier is called: a retry that
-- finds a row still 'started' knows a purchase may exist that it never heard back about.
CREATE TABLE shipping_label_purchases (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  order_id uuid NOT NULL,
  carrier_name text NOT NULL,
  rate_id text NOT NULL,
  job_id bigint,
  attempt integer,
  transaction_id text,
  status text NOT NULL DEFAULT 'started',
  messages jsonb,
  label_url text,
  refund_id text,
  refund_status text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_shipping_label_purchases PRIMARY KEY (id),
  CONSTRAINT fk_shipping_label_purchases_order_id_orders FOREIGN KEY (order_id)
    REFERENCES orders (id) ON DELETE CASCADE,
  CONSTRAINT ck_shipping_label_purchases_status CHECK (status IN (
    'started', 'rejected', 'pending', 'succeeded', 'error', 'refund_pending', 'refunded',
    'refund_rejected'))
);
CREATE INDEX ix_shipping_label_purchases_order_id_created_at
  ON shipping_label_purchases (order_id, created_at);
CREATE UNIQUE INDEX uq_shipping_label_purchases_transaction_id
  ON shipping_label_purchases (carrier_name, transaction_id) WHERE transaction_id IS NOT NULL;
CREATE TRIGGER shipping_label_purchases_set_updated_at BEFORE UPDATE
  ON shipping_label_purchases FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The sandbox carrier's own records (shipments, rates, transactions), standing in for the
-- carrier's database: written in their own transactions, like calls to a remote API.
CREATE TABLE sandbox_carrier_objects (
  object_id text NOT NULL,
  kind text NOT NULL,
  data jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_sandbox_carrier_objects PRIMARY KEY (object_id)
);
CREATE INDEX ix_sandbox_carrier_objects_rate ON sandbox_carrier_objects ((data ->> 'rate'))
  WHERE kind = 'transaction';
CREATE INDEX ix_sandbox_carrier_objects_tracking
  ON sandbox_carrier_objects ((data ->> 'tracking_number')) WHERE kind = 'transaction';

ALTER TABLE shipping_rate_quotes ENABLE ROW LEVEL SECURITY;
ALTER TABLE shipping_label_purchases ENABLE ROW LEVEL SECURITY;
ALTER TABLE sandbox_carrier_objects ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON shipping_rate_quotes, shipping_label_purchases, sandbox_carrier_objects
  FROM anon, authenticated;
"""


def upgrade() -> None:
    op.execute(TABLES)


def downgrade() -> None:
    op.execute(
        "DROP TABLE IF EXISTS sandbox_carrier_objects, shipping_label_purchases, "
        "shipping_rate_quotes"
    )
