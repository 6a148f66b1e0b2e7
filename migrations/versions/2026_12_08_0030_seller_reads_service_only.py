"""The sellers' read functions (0029) callable by the service only (found in review).

Each takes the seller's id as a parameter and switches to that seller's role and claims
itself, so whoever may call it reads any seller's orders by naming them. PostgreSQL grants
EXECUTE on a new function to PUBLIC, and Supabase's default privileges grant it to `anon` and
`authenticated` by name; its Data API (PostgREST, connected as `authenticator`, a member of
both) serves every function of `public` it may call as /rest/v1/rpc/<name>, with the public
anon key. Revoked from all three: the owner (the service's role, which runs the migrations and
the API) keeps EXECUTE as the owner, and the functions run as before for it.
tests/security/test_attack_seller_reads_privileges.py.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTIONS = (
    "seller_order_json(uuid, uuid)",
    "seller_orders_page(uuid, int, timestamptz, uuid)",
)


def upgrade() -> None:
    for function in _FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC, anon, authenticated")


def downgrade() -> None:
    for function in _FUNCTIONS:
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")
