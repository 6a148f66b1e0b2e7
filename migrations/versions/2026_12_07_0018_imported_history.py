"""Imported orders are history (issue 21): a status of their own, `imported`, that no move,
queue, label or payout takes; the status the seller's browser showed kept beside it
(`imported_status`, display only); the order a seller's "continue" made (`continued_as_id`).

Orders imported before this revision that nothing has moved since (their only history row is
the import's) become `imported`, and lose what the export alone asserted and the operational
reads would act on: the tracking number, label URL and payout signature. Downgrading turns
imported history into `cancelled` (the older schema has no status that nothing acts on).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHOWN = (
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
STATUSES = (*SHOWN, "imported")


def upgrade() -> None:
    op.execute(f"""
ALTER TABLE orders DROP CONSTRAINT ck_orders_status;
ALTER TABLE orders ADD CONSTRAINT ck_orders_status CHECK (status IN {STATUSES!r});
ALTER TABLE orders ADD COLUMN imported_status text;
ALTER TABLE orders ADD COLUMN continued_as_id uuid;
ALTER TABLE orders ADD CONSTRAINT fk_orders_continued_as_id_orders
  FOREIGN KEY (continued_as_id) REFERENCES orders (id) ON DELETE SET NULL;
ALTER TABLE orders ADD CONSTRAINT uq_orders_continued_as_id UNIQUE (continued_as_id);
-- Set exactly when the order is imported history: a status the browser showed.
ALTER TABLE orders ADD CONSTRAINT ck_orders_imported_status CHECK (
  (status = 'imported') = (imported_status IS NOT NULL)
  AND (imported_status IS NULL OR imported_status IN {SHOWN!r})
);
-- Only imported history is continued.
ALTER TABLE orders ADD CONSTRAINT ck_orders_continued_only_imported CHECK (
  continued_as_id IS NULL OR status = 'imported'
);

UPDATE orders o
SET imported_status = o.status, status = 'imported', tracking_number = NULL,
    label_url = NULL, label_purchased_at = NULL, payment_tx_signature = NULL
FROM localstorage_imports c
WHERE c.kind = 'order' AND c.record_id = o.id
  AND NOT EXISTS (
    SELECT 1 FROM order_status_history h
    WHERE h.order_id = o.id AND h.notes IS DISTINCT FROM 'imported'
  );

-- An import the backend has moved since is a live order, but its price and any signature
-- came from the seller's browser: the signature goes (a real one is only written when a
-- payout completes the order), and an operator is asked to check the price before anyone
-- inspects it as quoted or pays it.
UPDATE orders o
SET payment_tx_signature = NULL,
    attention_reason = 'imported from a browser export and moved since: check its price, '
                       || 'tracking number and label against the server''s before inspecting '
                       || 'or paying',
    attention_at = now()
FROM localstorage_imports c
WHERE c.kind = 'order' AND c.record_id = o.id
  AND o.status NOT IN ('imported', 'completed', 'cancelled');
""")  # noqa: S608 (DDL from this file's constants)


def downgrade() -> None:
    op.execute(f"""
ALTER TABLE orders DROP CONSTRAINT ck_orders_continued_only_imported;
ALTER TABLE orders DROP CONSTRAINT ck_orders_imported_status;
UPDATE orders SET status = 'cancelled', cancelled_at = coalesce(cancelled_at, now())
WHERE status = 'imported';
ALTER TABLE orders DROP COLUMN continued_as_id;
ALTER TABLE orders DROP COLUMN imported_status;
ALTER TABLE orders DROP CONSTRAINT ck_orders_status;
ALTER TABLE orders ADD CONSTRAINT ck_orders_status CHECK (status IN {SHOWN!r});
""")  # noqa: S608 (DDL from this file's constants)
