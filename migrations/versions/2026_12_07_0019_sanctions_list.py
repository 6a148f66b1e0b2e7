"""Sanctions screening (issue 23): OFAC's SDN list as screening reads it.

- `sanctioned_addresses`: every Solana address the list names (by its exact written form),
  with the entry naming it and the list's publish date.
- `sanctions_list`: one row (id 1) describing the list loaded: its publish date (the list's
  age counts from it), when it was loaded, the record count it states, the addresses kept and
  the file's SHA-256. No row: no list was ever loaded.
`refit sanctions load` replaces both in one transaction, so a payout screened meanwhile reads
the old list or the new one, never none. The service's alone: neither `anon` nor
`authenticated` may read them.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE TABLE sanctioned_addresses (
  address text NOT NULL,
  sdn_uid integer NOT NULL,
  sdn_name text NOT NULL,
  id_type text NOT NULL,
  published_on date NOT NULL,
  CONSTRAINT pk_sanctioned_addresses PRIMARY KEY (address)
);

CREATE TABLE sanctions_list (
  id smallint NOT NULL DEFAULT 1,
  published_on date NOT NULL,
  loaded_at timestamptz NOT NULL DEFAULT now(),
  record_count integer NOT NULL,
  address_count integer NOT NULL,
  source_sha256 text NOT NULL,
  CONSTRAINT pk_sanctions_list PRIMARY KEY (id),
  CONSTRAINT ck_sanctions_list_one_row CHECK (id = 1),
  CONSTRAINT ck_sanctions_list_counts CHECK (record_count >= 0 AND address_count >= 0),
  CONSTRAINT ck_sanctions_list_sha256 CHECK (source_sha256 ~ '^[0-9a-f]{64}$')
);

ALTER TABLE sanctioned_addresses ENABLE ROW LEVEL SECURITY;
ALTER TABLE sanctions_list ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON sanctioned_addresses, sanctions_list FROM anon, authenticated;
"""

DOWNGRADE = """
DROP TABLE sanctions_list;
DROP TABLE sanctioned_addresses;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
