"""The job queue's schema (procrastinate), applied by Alembic like everything else.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Pinned to the procrastinate version in uv.lock. Upgrading procrastinate means adding an
Alembic revision that applies its migration files (procrastinate/sql/migrations/).
"""

from collections.abc import Sequence

from alembic import op
from procrastinate.schema import SchemaManager

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROP_PROCRASTINATE = r"""
DO $$
DECLARE obj record;
BEGIN
  FOR obj IN
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
      AND c.relname LIKE 'procrastinate\_%'
  LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', obj.relname);
  END LOOP;
  FOR obj IN
    SELECT p.oid::regprocedure AS signature FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\_%'
  LOOP
    EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', obj.signature);
  END LOOP;
  FOR obj IN
    SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\_%'
      AND (t.typtype = 'e' OR (t.typtype = 'c' AND EXISTS (
        SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c')))
  LOOP
    EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', obj.typname);
  END LOOP;
END
$$;
"""


def upgrade() -> None:
    op.execute(SchemaManager.get_schema())


def downgrade() -> None:
    op.execute(DROP_PROCRASTINATE)
