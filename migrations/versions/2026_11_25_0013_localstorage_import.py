"""The browser-storage import (issue 14): which browser ids became which rows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25

`localstorage_imports` holds one row per address or order a browser export brought in, keyed
by the seller and the browser's own id: an import claims the key (`ON CONFLICT DO NOTHING`)
before it writes the row, in the same transaction, so running an import twice, or two imports
of the same file at once, writes each row once. `record_id` is the address's or order's id
(no foreign key: it points into two tables, and a seller may delete an imported address
while its claim must stay, or a second run would bring the address back).

History needs no new kind: an imported order's entry is a row like any other
(from_status NULL, notes 'imported', the browser's timestamps in its metadata).
The table is the service's alone: the seller's upload writes it as the service after the
wallet check.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE localstorage_imports (
  user_id uuid NOT NULL,
  kind text NOT NULL,
  browser_id text NOT NULL,
  record_id uuid NOT NULL,
  -- 'cli:<file name>' or 'upload'
  source text NOT NULL,
  imported_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_localstorage_imports PRIMARY KEY (user_id, kind, browser_id),
  CONSTRAINT fk_localstorage_imports_user_id_users FOREIGN KEY (user_id)
    REFERENCES users (id) ON DELETE CASCADE,
  CONSTRAINT ck_localstorage_imports_kind CHECK (kind IN ('address', 'order'))
);
ALTER TABLE localstorage_imports ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON localstorage_imports FROM anon, authenticated;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS localstorage_imports")
