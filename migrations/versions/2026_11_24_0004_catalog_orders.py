"""Device catalog, condition grades, quotes, idempotency keys; orders link to their quote.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

The catalog tables are created empty: `refit catalog load FILE` fills them (an upsert), and
`refit run` loads the file shipped in refit/catalog/data/ when the catalog is empty.

The order statuses stay the ten of docs/api.md: a seller's acceptance of a revised offer is
`orders.offer_accepted_at` on an order still in `offer_pending` (refit/orders/states.py).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CATEGORIES = ("phone", "tablet", "laptop", "watch")

TABLES = f"""
CREATE TABLE catalog_models (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  brand text NOT NULL,
  model text NOT NULL,
  category text NOT NULL,
  release_year integer,
  -- A model dropped from the catalog file is deactivated, never deleted: quotes refer to it.
  is_active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_catalog_models PRIMARY KEY (id),
  CONSTRAINT ck_catalog_models_category CHECK (category IN {CATEGORIES!r})
);
-- Sellers type names in any case: one model per brand + name, case-insensitively.
CREATE UNIQUE INDEX uq_catalog_models_lower_brand_lower_model
  ON catalog_models (lower(brand), lower(model));

CREATE TABLE catalog_variants (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  model_id uuid NOT NULL,
  storage text NOT NULL,
  -- What we pay for this model and storage in the best grade; grades scale it down.
  base_price_usd numeric(10, 2) NOT NULL,
  is_active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_catalog_variants PRIMARY KEY (id),
  CONSTRAINT uq_catalog_variants_model_id UNIQUE (model_id, storage),
  CONSTRAINT fk_catalog_variants_model_id_catalog_models FOREIGN KEY (model_id)
    REFERENCES catalog_models (id) ON DELETE CASCADE,
  CONSTRAINT ck_catalog_variants_base_price_not_negative CHECK (base_price_usd >= 0)
);

CREATE TABLE condition_grades (
  code text NOT NULL,
  name text NOT NULL,
  description text NOT NULL,
  price_factor numeric(5, 4) NOT NULL,
  sort_order integer NOT NULL DEFAULT 0,
  is_active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_condition_grades PRIMARY KEY (code),
  CONSTRAINT ck_condition_grades_price_factor_range CHECK (price_factor >= 0 AND price_factor <= 1)
);

-- A priced offer: the USD amount is what we promise until expires_at; SOL and lamports are
-- computed from the recorded rate at quote time.
CREATE TABLE quotes (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  catalog_variant_id uuid,
  device_brand text NOT NULL,
  device_model text NOT NULL,
  device_storage text NOT NULL,
  device_category text NOT NULL,
  device_condition text NOT NULL,
  device_details jsonb,
  base_price_usd numeric(10, 2) NOT NULL,
  price_factor numeric(5, 4) NOT NULL,
  price_usd numeric(10, 2) NOT NULL,
  price_sol numeric(10, 4) NOT NULL,
  price_lamports bigint NOT NULL,
  sol_usd_rate numeric(20, 8) NOT NULL,
  rate_source text NOT NULL,
  rate_timestamp timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_quotes PRIMARY KEY (id),
  CONSTRAINT fk_quotes_user_id_users FOREIGN KEY (user_id) REFERENCES users (id)
    ON DELETE CASCADE,
  CONSTRAINT fk_quotes_catalog_variant_id_catalog_variants FOREIGN KEY (catalog_variant_id)
    REFERENCES catalog_variants (id) ON DELETE SET NULL,
  CONSTRAINT ck_quotes_prices_not_negative CHECK (
    price_usd >= 0 AND price_sol >= 0 AND price_lamports >= 0),
  CONSTRAINT ck_quotes_rate_positive CHECK (sol_usd_rate > 0)
);
CREATE INDEX ix_quotes_user_id_created_at ON quotes (user_id, created_at DESC);

CREATE TABLE idempotency_keys (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  key text NOT NULL,
  request_method text NOT NULL,
  request_path text NOT NULL,
  request_hash text NOT NULL,
  response_status integer,
  response_body text,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_idempotency_keys PRIMARY KEY (id),
  -- Also the index on user_id (its leading column).
  CONSTRAINT uq_idempotency_keys_user_id UNIQUE (user_id, key),
  CONSTRAINT fk_idempotency_keys_user_id_users FOREIGN KEY (user_id) REFERENCES users (id)
    ON DELETE CASCADE
);
CREATE INDEX ix_idempotency_keys_created_at ON idempotency_keys (created_at);

ALTER TABLE orders
  ADD COLUMN quote_id uuid,
  ADD COLUMN device_storage text,
  ADD COLUMN device_category text,
  ADD COLUMN quoted_price_lamports bigint,
  -- The seller accepted the revised offer (the order stays offer_pending until paid).
  ADD COLUMN offer_accepted_at timestamptz,
  -- One order per quote, enforced by the database (two racing creates: one wins).
  ADD CONSTRAINT uq_orders_quote_id UNIQUE (quote_id),
  ADD CONSTRAINT fk_orders_quote_id_quotes FOREIGN KEY (quote_id) REFERENCES quotes (id)
    ON DELETE RESTRICT,
  ADD CONSTRAINT ck_orders_lamports_not_negative CHECK (coalesce(quoted_price_lamports, 0) >= 0);
-- The expiry sweeps: unshipped labels and unanswered offers.
CREATE INDEX ix_orders_label_purchased_at_awaiting ON orders (label_purchased_at)
  WHERE status = 'awaiting_shipment';
CREATE INDEX ix_orders_created_at_pending ON orders (created_at) WHERE status = 'pending';
CREATE INDEX ix_orders_offer_expires_at_pending ON orders (offer_expires_at)
  WHERE status = 'offer_pending' AND offer_accepted_at IS NULL;

CREATE TRIGGER catalog_models_set_updated_at BEFORE UPDATE ON catalog_models
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER catalog_variants_set_updated_at BEFORE UPDATE ON catalog_variants
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER condition_grades_set_updated_at BEFORE UPDATE ON condition_grades
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
"""

RLS = """
-- The catalog is public reference data: sellers read it (quotes are priced under their role),
-- only the service role writes it.
ALTER TABLE catalog_models ENABLE ROW LEVEL SECURITY;
ALTER TABLE catalog_variants ENABLE ROW LEVEL SECURITY;
ALTER TABLE condition_grades ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON catalog_models, catalog_variants, condition_grades FROM anon, authenticated;
GRANT SELECT ON catalog_models, catalog_variants, condition_grades TO authenticated;
CREATE POLICY catalog_models_select_all ON catalog_models FOR SELECT TO authenticated
  USING (true);
CREATE POLICY catalog_variants_select_all ON catalog_variants FOR SELECT TO authenticated
  USING (true);
CREATE POLICY condition_grades_select_all ON condition_grades FOR SELECT TO authenticated
  USING (true);

-- A quote is written once by its seller's request and never changed.
ALTER TABLE quotes ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON quotes FROM anon, authenticated;
GRANT SELECT, INSERT ON quotes TO authenticated;
CREATE POLICY quotes_select_own ON quotes FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY quotes_insert_own ON quotes FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY quotes_update_none ON quotes FOR UPDATE TO authenticated USING (false);
CREATE POLICY quotes_delete_none ON quotes FOR DELETE TO authenticated USING (false);

-- Keys are claimed and answered in the seller's own transaction; pruned by the service role.
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON idempotency_keys FROM anon, authenticated;
GRANT SELECT, INSERT, UPDATE ON idempotency_keys TO authenticated;
CREATE POLICY idempotency_keys_select_own ON idempotency_keys FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY idempotency_keys_insert_own ON idempotency_keys FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY idempotency_keys_update_own ON idempotency_keys FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY idempotency_keys_delete_none ON idempotency_keys FOR DELETE TO authenticated
  USING (false);
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(RLS)


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS ix_orders_offer_expires_at_pending;
        DROP INDEX IF EXISTS ix_orders_created_at_pending;
        DROP INDEX IF EXISTS ix_orders_label_purchased_at_awaiting;
        ALTER TABLE orders
          DROP CONSTRAINT ck_orders_lamports_not_negative,
          DROP CONSTRAINT fk_orders_quote_id_quotes,
          DROP CONSTRAINT uq_orders_quote_id,
          DROP COLUMN quoted_price_lamports,
          DROP COLUMN offer_accepted_at,
          DROP COLUMN device_category,
          DROP COLUMN device_storage,
          DROP COLUMN quote_id;
        DROP TABLE IF EXISTS idempotency_keys, quotes, condition_grades, catalog_variants,
          catalog_models;
        """
    )
