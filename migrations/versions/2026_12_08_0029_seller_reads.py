"""The seller's two hot reads as functions (issue 25): each switches to the seller's role and
claims (set_config's `true`: local to the statement's own transaction, as `fetch_as_user`'s
one message does) and then reads under Row Level Security, so one statement, prepared once
per connection, is the whole read: no BEGIN, role, claims and COMMIT around it.

SECURITY INVOKER (the default): the caller's own rights, then the seller's role; a definer's
rights would skip RLS, and PostgreSQL refuses SET ROLE inside a SECURITY DEFINER function
anyway. The answer is JSON text in the response model's shape, validated straight from the
text by refit.orders.reads (the order's `plain`: no inspection or payout, whose photo and
explorer links are made in Python).

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

_AS_SELLER = """
  PERFORM set_config('role', 'authenticated', true),
          set_config('request.jwt.claims',
                     json_build_object('sub', seller, 'role', 'authenticated')::text, true);
"""

# An order as its seller sees it: the columns of OrderRead (refit/orders/schemas.py), in its
# order, the amounts as text (as JSON numbers they would lose their scale: "150.00" read back
# as 150). With nothing else in it, the JSON is the response model's input as it is.
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
_ROW = f"json_build_object({_COLUMNS})"

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

# The same row written exactly as the response model writes it (pydantic: compact, UTC
# timestamps with "Z" and microseconds only when there are some, amounts as their text, which
# for these scales (at most 6 decimals) is Python's Decimal text too), so a page of such rows
# is the response as it is, with nothing to parse or write in Python. NULL for a row whose
# device_details hold what pydantic would write differently (a nested value, a number with a
# fraction: "1.50" comes back as 1.5); such a row goes as `_ROW` and the page through the
# model. tests/orders/test_seller_reads.py holds the two the same on odd values.
_TIMESTAMPS = {
    "label_purchased_at",
    "offer_expires_at",
    "offer_accepted_at",
    "created_at",
    "updated_at",
    "shipped_at",
    "received_at",
    "completed_at",
    "cancelled_at",
}


def _exact(column: str) -> str:
    value = f"o.{column}"
    if column in _TIMESTAMPS:
        utc = f"({value} AT TIME ZONE 'UTC')"
        text = (
            f"'\"' || to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
            f" || CASE WHEN extract(microseconds FROM {value})::int % 1000000 = 0 THEN ''"
            f" ELSE to_char({utc}, '.US') END || 'Z\"'"
        )
    elif column in _NUMERIC:
        text = f"'\"' || {value}::text || '\"'"
    elif column == "device_details":
        return f"""CASE WHEN {value} IS NULL THEN 'null'
          WHEN jsonb_typeof({value}) = 'object' AND NOT EXISTS (
            SELECT FROM jsonb_each({value}) e
            WHERE jsonb_typeof(e.value) IN ('object', 'array')
               OR (jsonb_typeof(e.value) = 'number' AND e.value::text !~ '^-?[0-9]+$'))
          THEN '{{' || coalesce((
            SELECT string_agg(to_json(e.key)::text || ':' || e.value::text, ',' ORDER BY e.n)
            FROM jsonb_each({value}) WITH ORDINALITY e(key, value, n)), '') || '}}'
          END"""
    else:
        text = f"to_json({value})::text"
    return f"coalesce({text}, 'null')"


_EXACT_ROW = (
    "'{' || " + " || ',' || ".join(f"'\"{c}\":' || {_exact(c)}" for c in _LISTED) + " || '}'"
)

_PAGE_ROWS = """
      SELECT o.*, row_number() OVER (ORDER BY o.created_at DESC, o.id DESC) AS n,
             count(*) OVER () AS fetched
      FROM (SELECT * FROM orders o WHERE o.user_id = seller AFTER
            ORDER BY o.created_at DESC, o.id DESC LIMIT page_size + 1) o
"""
_AFTER = "AND (o.created_at, o.id) < (after_created_at, after_id)"
# The page's rows (one more than asked for, to know there is a next page), each written once
# exactly (or, failing that, as `_ROW`), and the position of its last row when there is more.
_PAGE_QUERY = f"""
    SELECT '[' || coalesce(string_agg(coalesce(o.exact, {_ROW}::text), ',' ORDER BY o.n), '')
             || ']',
           coalesce(bool_and(o.exact IS NOT NULL), true),
           max(o.created_at) FILTER (WHERE o.n = page_size AND o.fetched > page_size),
           max(o.id::text) FILTER (WHERE o.n = page_size AND o.fetched > page_size)::uuid
    INTO items, exact, next_created_at, next_id
    FROM (
      SELECT o.*, {_EXACT_ROW} AS exact FROM (ROWS) o WHERE o.n <= page_size
    ) o;
"""


def _page_query(after: str) -> str:
    return _PAGE_QUERY.replace("ROWS", _PAGE_ROWS.replace("AFTER", after))


_PAGE = f"""
CREATE FUNCTION seller_orders_page(seller uuid, page_size int, after_created_at timestamptz,
                                   after_id uuid, OUT items text, OUT exact boolean,
                                   OUT next_created_at timestamptz, OUT next_id uuid)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
{_AS_SELLER}
  -- Two statements, not one with `after_id IS NULL OR ...`: each keeps its own plan over
  -- the (user_id, created_at, id) index, the next page's starting at the cursor.
  IF after_id IS NULL THEN
{_page_query("")}
  ELSE
{_page_query(_AFTER)}
  END IF;
END
$fn$
"""


def upgrade() -> None:
    op.execute(_ORDER)
    op.execute(_PAGE)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION seller_orders_page(uuid, int, timestamptz, uuid,"
        " OUT text, OUT boolean, OUT timestamptz, OUT uuid)"
    )
    op.execute("DROP FUNCTION seller_order_json(uuid, uuid, OUT text, OUT boolean)")
