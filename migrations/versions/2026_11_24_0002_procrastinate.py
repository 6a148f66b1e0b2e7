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


# procrastinate records that a job failed, not why: every failed attempt's error is kept here
# (written by refit.queue's worker middleware) so operators can read it next to the job.
JOB_ERRORS = """
CREATE TABLE job_errors (
  id bigint GENERATED ALWAYS AS IDENTITY,
  job_id bigint NOT NULL,
  task_name text NOT NULL,
  attempt integer NOT NULL,
  error_type text NOT NULL,
  message text NOT NULL,
  traceback text,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_job_errors PRIMARY KEY (id),
  CONSTRAINT fk_job_errors_job_id_procrastinate_jobs FOREIGN KEY (job_id)
    REFERENCES procrastinate_jobs (id) ON DELETE CASCADE
);
CREATE INDEX ix_job_errors_job_id ON job_errors (job_id, created_at);
"""


# The queue is a system table set: on Supabase new tables are granted to anon/authenticated by
# default privileges (and reachable through its Data API), and functions are executable by
# PUBLIC. Nobody but the service role may read, write or call any of it.
LOCK_DOWN = r"""
DO $$
DECLARE obj record;
BEGIN
  FOR obj IN
    SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'S')
      AND (c.relname LIKE 'procrastinate\_%' OR c.relname LIKE 'job\_errors%')
  LOOP
    EXECUTE format('REVOKE ALL ON %I FROM PUBLIC, anon, authenticated', obj.relname);
    IF obj.relkind = 'r' THEN
      EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', obj.relname);
    END IF;
  END LOOP;
  FOR obj IN
    SELECT p.oid::regprocedure AS signature FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\_%'
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated', obj.signature);
  END LOOP;
END
$$;
"""


def upgrade() -> None:
    op.execute(SchemaManager.get_schema())
    op.execute(JOB_ERRORS)
    op.execute(LOCK_DOWN)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS job_errors")
    op.execute(DROP_PROCRASTINATE)
