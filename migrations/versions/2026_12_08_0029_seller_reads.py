"""The seller's two hot reads as functions (issue 25): each switches to the seller's role and
claims (set_config's `true`: local to the statement's own transaction, as `fetch_as_user`'s
one message does) and then reads under Row Level Security, so one statement, prepared once
per connection, is the whole read: no BEGIN, role, claims and COMMIT around it.

SECURITY INVOKER (the default): the caller's own rights, then the seller's role; a definer's
rights would skip RLS, and PostgreSQL refuses SET ROLE inside a SECURITY DEFINER function
anyway. The order's answer is JSON text in the response model's shape, validated straight
from the text by refit.orders.reads (its `plain`: no inspection or payout, whose photo and
explorer links are made in Python); the list's, the page's rows as they are.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-08
"""

# ruff: noqa: S608 (SQL built from this module's constants; values are the functions' parameters)
from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Local to the statement's transaction: called as its own statement (refit.hot_path, one
# statement a call, no transaction around it) the role and claims end with it. Called inside
# an open transaction they would last until its end: never call these from a session.
_AS_SELLER = """
  PERFORM set_config('role', 'authenticated', true),
          set_config('request.jwt.claims',
                     json_build_object('sub', seller, 'role', 'authenticated')::text, true);
"""

# The order as its seller sees it: the columns of OrderRead (refit/orders/schemas.py), in its
# order, the amounts as text (as JSON numbers they would lose their scale: "150.00" read back
# as 150), then its history, inspection and payout: OrderDetail's input as it is.
# tests/orders/test_seller_reads.py holds the two the same.
_NUMERIC = {
    "quoted_price_usd",
    "quoted_price_sol",
    "final_price_usd",
    "final_price_sol",
    "shipping_cost",
}
_LISTED = [
    "id", "order_number", "user_id", "status", "quote_id", "device_brand", "device_model",
    "device_storage", "device_category", "device_condition", "device_details",
    "quoted_price_usd", "quoted_price_sol", "quoted_price_lamports", "final_price_usd",
    "final_price_sol", "shipping_address_id", "shipping_rate_id", "shipping_carrier",
    "shipping_service", "shipping_cost", "tracking_number", "label_url", "label_error",
    "label_purchased_at", "escrow_pubkey", "payment_tx_signature", "offer_expires_at",
    "offer_accepted_at", "created_at", "updated_at", "shipped_at", "received_at",
    "completed_at", "cancelled_at", "imported_status", "continued_as_id",
]  # fmt: skip
_COLUMNS = ", ".join(f"'{c}', o.{c}::text" if c in _NUMERIC else f"'{c}', o.{c}" for c in _LISTED)

_ORDER = f"""
CREATE FUNCTION seller_order_json(seller uuid, wanted uuid, OUT detail text, OUT plain boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
{_AS_SELLER}
  SELECT json_build_object({_COLUMNS},
    'status_history', coalesce((
      SELECT json_agg(json_build_object('from_status', h.from_status, 'status', h.status,
                                        'actor', h.actor, 'notes', h.notes,
                                        'created_at', h.created_at)
                      ORDER BY h.created_at, h.id)
      FROM order_status_history h WHERE h.order_id = o.id), '[]'),
    'inspection', o.inspection, 'payout', o.payout)::text,
    o.inspection IS NULL AND o.payout IS NULL
  INTO detail, plain
  FROM (
    SELECT o.*,
      (SELECT json_build_object('grade', i.grade, 'storage', i.storage, 'notes', i.notes,
                                'checklist', i.checklist, 'inspected_at', i.created_at,
                                'photos', coalesce((
                                  SELECT json_agg(p.id ORDER BY p.created_at, p.id)
                                  FROM evidence_photos p WHERE p.order_id = o.id), '[]'))
       FROM inspections i WHERE i.order_id = o.id) AS inspection,
      (SELECT json_build_object('status', p.status, 'amount_usd', p.amount_usd::text,
                                'amount_sol', p.amount_sol::text, 'lamports', p.lamports,
                                'signature', p.signature)
       FROM payouts p WHERE p.order_id = o.id) AS payout
    FROM orders o WHERE o.id = wanted
  ) o;
END
$fn$
"""

_PAGE_ROWS = """
    RETURN QUERY SELECT * FROM orders o WHERE o.user_id = seller AFTER
    ORDER BY o.created_at DESC, o.id DESC LIMIT page_size;
"""
_AFTER = "AND (o.created_at, o.id) < (after_created_at, after_id)"

# The page's rows as they are (typed, in the binary protocol): refit.orders.reads writes them
# as the response model does, in Python, where the API's processes scale out. (Written as
# JSON here, the page cost PostgreSQL, the one server every process shares, 4-5 times the
# CPU of the query itself.)
_PAGE = f"""
CREATE FUNCTION seller_orders_page(seller uuid, page_size int, after_created_at timestamptz,
                                   after_id uuid) RETURNS SETOF orders
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
{_AS_SELLER}
  -- Two statements, not one with `after_id IS NULL OR ...`: each keeps its own plan over
  -- the (user_id, created_at, id) index, the next page's starting at the cursor.
  IF after_id IS NULL THEN
{_PAGE_ROWS.replace("AFTER", "")}
  ELSE
{_PAGE_ROWS.replace("AFTER", _AFTER)}
  END IF;
END
$fn$
"""


# PostgreSQL lets PUBLIC execute a new function. These take the seller's id as an argument
# and act as that seller: callable by a client's role (Supabase's PostgREST exposes functions
# to `anon` and `authenticated` as /rpc), they would read anyone's orders. Only their owner,
# the service role the API connects as, may call them.
_LOCK_DOWN = """
REVOKE ALL ON FUNCTION seller_order_json(uuid, uuid) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION seller_orders_page(uuid, int, timestamptz, uuid)
  FROM PUBLIC, anon, authenticated;
"""


def upgrade() -> None:
    op.execute(_ORDER)
    op.execute(_PAGE)
    op.execute(_LOCK_DOWN)


def downgrade() -> None:
    op.execute("DROP FUNCTION seller_orders_page(uuid, int, timestamptz, uuid)")
    op.execute("DROP FUNCTION seller_order_json(uuid, uuid, OUT text, OUT boolean)")
