"""Inspection of a received device, with photo evidence.

- `inspections`: one per order, the verdict of an operator: the grade, storage and identity
  (IMEI or serial) found, a checklist, notes, the catalog price for what was found, an admin's
  override (with its reason and who gave it) and the final price, and the outcome
  (`as_quoted`: paid the quoted price; `revised_offer`: the seller is offered the lower price;
  `unbuyable`: the device goes home).
- `evidence_photos`: photos of the device, re-encoded without metadata, stored in the label
  storage under `storage_key`.
- The seller (`authenticated`) may read both for their own orders (the app shows the owner
  the inspection and the photos); everything is written by the service.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWN_ORDER = (
    "EXISTS (SELECT 1 FROM orders o WHERE o.id = order_id AND o.user_id = (SELECT auth.uid()))"
)

UPGRADE = f"""
CREATE TABLE inspections (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  operator_id uuid NOT NULL REFERENCES operators (id),
  grade text NOT NULL REFERENCES condition_grades (code),
  storage text,
  imei text,
  serial text,
  checklist jsonb NOT NULL,
  notes text NOT NULL DEFAULT '',
  catalog_price_usd numeric(10, 2),
  override_price_usd numeric(10, 2),
  override_reason text,
  override_by uuid REFERENCES operators (id),
  final_price_usd numeric(10, 2),
  outcome text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT uq_inspections_order_id UNIQUE (order_id),
  CONSTRAINT ck_inspections_identity CHECK (imei IS NOT NULL OR serial IS NOT NULL),
  CONSTRAINT ck_inspections_imei CHECK (imei ~ '^[0-9]{{15}}$'),
  CONSTRAINT ck_inspections_override CHECK (
    (override_price_usd IS NULL AND override_reason IS NULL AND override_by IS NULL)
    OR (override_price_usd >= 0 AND override_reason <> '' AND override_by IS NOT NULL)),
  CONSTRAINT ck_inspections_outcome CHECK (
    outcome IN ('as_quoted', 'revised_offer', 'unbuyable')),
  CONSTRAINT ck_inspections_final_price CHECK (
    (outcome = 'unbuyable') = (final_price_usd IS NULL))
);
-- The payout job's question: inspected as quoted, not yet paid.
CREATE INDEX ix_inspections_as_quoted ON inspections (created_at) WHERE outcome = 'as_quoted';

CREATE TABLE evidence_photos (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  storage_key text NOT NULL,
  content_type text NOT NULL,
  bytes integer NOT NULL,
  width integer NOT NULL,
  height integer NOT NULL,
  sha256 text NOT NULL,
  uploaded_by uuid NOT NULL REFERENCES operators (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT uq_evidence_photos_storage_key UNIQUE (storage_key),
  CONSTRAINT ck_evidence_photos_content_type CHECK (
    content_type IN ('image/jpeg', 'image/png', 'image/webp'))
);
CREATE INDEX ix_evidence_photos_order_id ON evidence_photos (order_id, created_at);

ALTER TABLE inspections ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON inspections FROM anon, authenticated;
GRANT SELECT ON inspections TO authenticated;
CREATE POLICY inspections_select_own ON inspections FOR SELECT TO authenticated
  USING ({OWN_ORDER});

ALTER TABLE evidence_photos ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON evidence_photos FROM anon, authenticated;
GRANT SELECT ON evidence_photos TO authenticated;
CREATE POLICY evidence_photos_select_own ON evidence_photos FOR SELECT TO authenticated
  USING ({OWN_ORDER});
"""  # noqa: S608 (DDL from this file's constants)

DOWNGRADE = """
DROP TABLE evidence_photos;
DROP TABLE inspections;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
