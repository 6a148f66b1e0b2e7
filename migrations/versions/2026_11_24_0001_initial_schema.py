"""The plan's schema: users, shipping_addresses, orders, order_status_history,
shipping_events; order numbers; updated_at triggers; Supabase-compatible auth.uid() and
Row Level Security.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDER_STATUSES = (
    "pending",
    "processing_shipment",
    "awaiting_shipment",
    "shipped",
    "received",
    "inspecting",
    "offer_pending",
    "returning",
    "completed",
    "cancelled",
)

# On Supabase the auth schema, auth.uid() and the roles exist already: create only what is
# missing, so the same policies run on Supabase and on plain PostgreSQL (CI, embedded).
AUTH_SETUP = r"""
CREATE SCHEMA IF NOT EXISTS auth;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'auth' AND p.proname = 'uid'
  ) THEN
    -- Supabase's own definition: the `sub` claim of the request's JWT.
    CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $fn$
      SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
      )::uuid
    $fn$;
    GRANT USAGE ON SCHEMA auth TO anon, authenticated;
    GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated;
  END IF;
  -- The service connects as its own role and switches to `authenticated` per user request.
  IF NOT pg_has_role(current_user, 'authenticated', 'MEMBER') THEN
    EXECUTE format('GRANT authenticated TO %I', current_user);
  END IF;
END
$$;
"""

TABLES = f"""
CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE SEQUENCE order_number_seq;
-- ORD-<year>-<000001>: six digits, growing past 999999 rather than wrapping.
CREATE FUNCTION next_order_number() RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT 'ORD-' || to_char(now() AT TIME ZONE 'UTC', 'YYYY') || '-'
         || lpad(n::text, greatest(6, length(n::text)), '0')
  FROM (SELECT nextval('order_number_seq') AS n) AS s
$$;

CREATE TABLE users (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  wallet_address text NOT NULL,
  email text,
  email_verified boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_users PRIMARY KEY (id),
  CONSTRAINT uq_users_wallet_address UNIQUE (wallet_address)
);
CREATE UNIQUE INDEX uq_users_email_lower ON users (lower(email)) WHERE email IS NOT NULL;

CREATE TABLE shipping_addresses (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  name text NOT NULL,
  street1 text NOT NULL,
  street2 text,
  city text NOT NULL,
  state text NOT NULL,
  zip text NOT NULL,
  country text NOT NULL DEFAULT 'US',
  phone text,
  is_default boolean NOT NULL DEFAULT false,
  is_validated boolean NOT NULL DEFAULT false,
  validation_data jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_shipping_addresses PRIMARY KEY (id),
  CONSTRAINT fk_shipping_addresses_user_id_users FOREIGN KEY (user_id)
    REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX ix_shipping_addresses_user_id_created_at
  ON shipping_addresses (user_id, created_at DESC);
CREATE UNIQUE INDEX uq_shipping_addresses_one_default
  ON shipping_addresses (user_id) WHERE is_default;

CREATE TABLE orders (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  order_number text NOT NULL DEFAULT next_order_number(),
  user_id uuid NOT NULL,
  status text NOT NULL DEFAULT 'pending',
  device_brand text NOT NULL,
  device_model text NOT NULL,
  device_condition text NOT NULL,
  device_details jsonb,
  quoted_price_usd numeric(10, 2) NOT NULL,
  quoted_price_sol numeric(10, 4) NOT NULL,
  final_price_usd numeric(10, 2),
  final_price_sol numeric(10, 4),
  shipping_address_id uuid,
  shipping_rate_id text,
  shipping_carrier text,
  shipping_service text,
  shipping_cost numeric(10, 2),
  tracking_number text,
  label_url text,
  label_transaction_id text,
  label_file_key text,
  label_error text,
  label_purchased_at timestamptz,
  escrow_pubkey text,
  payment_tx_signature text,
  offer_expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  shipped_at timestamptz,
  received_at timestamptz,
  completed_at timestamptz,
  cancelled_at timestamptz,
  CONSTRAINT pk_orders PRIMARY KEY (id),
  CONSTRAINT uq_orders_order_number UNIQUE (order_number),
  CONSTRAINT fk_orders_user_id_users FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT fk_orders_shipping_address_id_shipping_addresses FOREIGN KEY (shipping_address_id)
    REFERENCES shipping_addresses (id) ON DELETE SET NULL,
  CONSTRAINT ck_orders_status CHECK (status IN {ORDER_STATUSES!r}),
  CONSTRAINT ck_orders_prices_not_negative CHECK (
    quoted_price_usd >= 0 AND quoted_price_sol >= 0
    AND coalesce(final_price_usd, 0) >= 0 AND coalesce(final_price_sol, 0) >= 0
  )
);
CREATE INDEX ix_orders_user_id_created_at ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX ix_orders_tracking_number ON orders (tracking_number)
  WHERE tracking_number IS NOT NULL;
CREATE INDEX ix_orders_status_updated_at ON orders (status, updated_at);
CREATE INDEX ix_orders_shipping_address_id ON orders (shipping_address_id);

CREATE TABLE order_status_history (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  order_id uuid NOT NULL,
  from_status text,
  status text NOT NULL,
  actor text NOT NULL DEFAULT 'system',
  notes text,
  metadata jsonb,
  -- clock_timestamp: several moves in one transaction keep their order.
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT pk_order_status_history PRIMARY KEY (id),
  CONSTRAINT fk_order_status_history_order_id_orders FOREIGN KEY (order_id)
    REFERENCES orders (id) ON DELETE CASCADE
);
CREATE INDEX ix_order_status_history_order_id_created_at
  ON order_status_history (order_id, created_at);

CREATE TABLE shipping_events (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  order_id uuid NOT NULL,
  event_type text NOT NULL,
  carrier_status text,
  location text,
  description text,
  raw_data jsonb,
  occurred_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_shipping_events PRIMARY KEY (id),
  CONSTRAINT fk_shipping_events_order_id_orders FOREIGN KEY (order_id)
    REFERENCES orders (id) ON DELETE CASCADE
);
CREATE INDEX ix_shipping_events_order_id_occurred_at ON shipping_events (order_id, occurred_at);

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER shipping_addresses_set_updated_at BEFORE UPDATE ON shipping_addresses
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER orders_set_updated_at BEFORE UPDATE ON orders
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
"""  # noqa: S608 (DDL from this file's constants)

# `(SELECT auth.uid())` is evaluated once per statement (an InitPlan), so the planner can use
# the user_id indexes instead of calling the function per row.
RLS = """
GRANT USAGE ON SCHEMA public TO authenticated;
REVOKE ALL ON alembic_version FROM PUBLIC, anon, authenticated;
-- Supabase's default privileges grant every new table to anon and authenticated: each table
-- below revokes them first and grants back exactly what its policies are written for.
GRANT USAGE ON SEQUENCE order_number_seq TO authenticated;

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON users FROM anon, authenticated;
GRANT SELECT ON users TO authenticated;
CREATE POLICY users_select_own ON users FOR SELECT TO authenticated
  USING (id = (SELECT auth.uid()));
-- Sign-in and email verification write users through the service role only.
CREATE POLICY users_insert_none ON users FOR INSERT TO authenticated WITH CHECK (false);
CREATE POLICY users_update_none ON users FOR UPDATE TO authenticated USING (false);
CREATE POLICY users_delete_none ON users FOR DELETE TO authenticated USING (false);

ALTER TABLE shipping_addresses ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON shipping_addresses FROM anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON shipping_addresses TO authenticated;
CREATE POLICY shipping_addresses_select_own ON shipping_addresses FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY shipping_addresses_insert_own ON shipping_addresses FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY shipping_addresses_update_own ON shipping_addresses FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY shipping_addresses_delete_own ON shipping_addresses FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON orders FROM anon, authenticated;
GRANT SELECT, INSERT, UPDATE ON orders TO authenticated;
CREATE POLICY orders_select_own ON orders FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY orders_insert_own ON orders FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY orders_update_own ON orders FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
-- An order is a financial record: a seller cancels it, never deletes it.
CREATE POLICY orders_delete_none ON orders FOR DELETE TO authenticated USING (false);

ALTER TABLE order_status_history ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON order_status_history FROM anon, authenticated;
GRANT SELECT, INSERT ON order_status_history TO authenticated;
CREATE POLICY order_status_history_select_own ON order_status_history FOR SELECT
  TO authenticated USING (EXISTS (
    SELECT 1 FROM orders o WHERE o.id = order_id AND o.user_id = (SELECT auth.uid())));
CREATE POLICY order_status_history_insert_own ON order_status_history FOR INSERT
  TO authenticated WITH CHECK (EXISTS (
    SELECT 1 FROM orders o WHERE o.id = order_id AND o.user_id = (SELECT auth.uid())));
-- History is append-only.
CREATE POLICY order_status_history_update_none ON order_status_history FOR UPDATE
  TO authenticated USING (false);
CREATE POLICY order_status_history_delete_none ON order_status_history FOR DELETE
  TO authenticated USING (false);

ALTER TABLE shipping_events ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON shipping_events FROM anon, authenticated;
GRANT SELECT ON shipping_events TO authenticated;
CREATE POLICY shipping_events_select_own ON shipping_events FOR SELECT TO authenticated
  USING (EXISTS (
    SELECT 1 FROM orders o WHERE o.id = order_id AND o.user_id = (SELECT auth.uid())));
-- Carrier events come from webhooks through the service role.
CREATE POLICY shipping_events_insert_none ON shipping_events FOR INSERT TO authenticated
  WITH CHECK (false);
CREATE POLICY shipping_events_update_none ON shipping_events FOR UPDATE TO authenticated
  USING (false);
CREATE POLICY shipping_events_delete_none ON shipping_events FOR DELETE TO authenticated
  USING (false);
"""


def upgrade() -> None:
    op.execute(AUTH_SETUP)
    op.execute(TABLES)
    op.execute(RLS)


def downgrade() -> None:
    # The auth schema, auth.uid(), the roles and the public schema's USAGE grant are left in
    # place: on Supabase they are not ours, and roles are shared by every database of the
    # cluster.
    op.execute(
        """
        DROP TABLE IF EXISTS shipping_events, order_status_history, orders,
          shipping_addresses, users CASCADE;
        DROP FUNCTION IF EXISTS next_order_number();
        DROP SEQUENCE IF EXISTS order_number_seq;
        DROP FUNCTION IF EXISTS set_updated_at();
        """
    )
