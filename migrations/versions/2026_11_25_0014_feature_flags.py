"""Feature flags (issue 14).

- `feature_flags`: one row per flag, by name: off, on, on for listed wallets, or on for a
  percentage of wallets (a stable hash of flag and wallet, refit/flags/rules.py); optional
  weighted variants for A/B tests. Every process keeps them in memory and re-reads them when
  `pg_notify('feature_flags')` says one changed (sent in the writing transaction).
- `feature_flag_audit`: every change, who made it, when, and the flag before and after
  (`before` NULL: the change created the flag). Written in the same transaction as the change.
- `feature_flag_exposures`: how many times each variant was served, per flag; processes count
  in memory and add their counts here every few seconds (one upsert), never per request.
The service's alone: neither `anon` nor `authenticated` may read them (sellers get their own
flags evaluated by the API).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE feature_flags (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  mode text NOT NULL,
  percent smallint NOT NULL DEFAULT 0,
  wallets text[] NOT NULL DEFAULT '{}',
  variants jsonb NOT NULL DEFAULT '[]',
  description text NOT NULL DEFAULT '',
  updated_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT uq_feature_flags_name UNIQUE (name),
  CONSTRAINT ck_feature_flags_name CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  CONSTRAINT ck_feature_flags_mode CHECK (mode IN ('off', 'on', 'wallets', 'percent')),
  CONSTRAINT ck_feature_flags_percent CHECK (percent BETWEEN 0 AND 100),
  CONSTRAINT ck_feature_flags_variants CHECK (jsonb_typeof(variants) = 'array')
);
CREATE TRIGGER feature_flags_set_updated_at BEFORE UPDATE ON feature_flags
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE feature_flag_audit (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  flag_id uuid NOT NULL,
  actor text NOT NULL,
  before jsonb,
  after jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT fk_feature_flag_audit_flag_id_feature_flags
    FOREIGN KEY (flag_id) REFERENCES feature_flags (id)
);
CREATE INDEX ix_feature_flag_audit_flag_id_created_at
  ON feature_flag_audit (flag_id, created_at);

CREATE TABLE feature_flag_exposures (
  flag_id uuid NOT NULL,
  variant text NOT NULL,
  exposures bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_feature_flag_exposures PRIMARY KEY (flag_id, variant),
  CONSTRAINT fk_feature_flag_exposures_flag_id_feature_flags
    FOREIGN KEY (flag_id) REFERENCES feature_flags (id)
);

ALTER TABLE feature_flags ENABLE ROW LEVEL SECURITY;
ALTER TABLE feature_flag_audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE feature_flag_exposures ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON feature_flags, feature_flag_audit, feature_flag_exposures FROM anon, authenticated;
"""

DOWNGRADE = """
DROP TABLE feature_flag_exposures;
DROP TABLE feature_flag_audit;
DROP TABLE feature_flags;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
