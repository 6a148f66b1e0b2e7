"""Wallet sign-in nonces, email verification tokens and the outbound mail log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

All three are system tables: written by the service role only (sign-in runs before there is a
user; tokens and mail are the service's own bookkeeping). Row Level Security is enabled with no
policy and every privilege is revoked from `anon`/`authenticated`, because Supabase's default
privileges grant each new public table to those roles.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SYSTEM_TABLES = ("siws_nonces", "email_verification_tokens", "outbound_emails")

TABLES = """
-- One row per nonce handed out by POST /api/auth/nonce; consumed (used_at) by the one
-- connect-wallet that wins the atomic UPDATE ... WHERE used_at IS NULL.
CREATE TABLE siws_nonces (
  nonce text NOT NULL,
  wallet_address text NOT NULL,
  issued_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_siws_nonces PRIMARY KEY (nonce)
);
CREATE INDEX ix_siws_nonces_expires_at ON siws_nonces (expires_at);

-- Only the SHA-256 of a token is stored: a database leak does not verify anyone's email.
CREATE TABLE email_verification_tokens (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  email text NOT NULL,
  token_hash text NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_email_verification_tokens PRIMARY KEY (id),
  CONSTRAINT uq_email_verification_tokens_token_hash UNIQUE (token_hash),
  CONSTRAINT fk_email_verification_tokens_user_id_users FOREIGN KEY (user_id)
    REFERENCES users (id) ON DELETE CASCADE
);
-- The resend throttle looks up the newest token per user and per address.
CREATE INDEX ix_email_verification_tokens_user_id_created_at
  ON email_verification_tokens (user_id, created_at DESC);
CREATE INDEX ix_email_verification_tokens_lower_email_created_at
  ON email_verification_tokens (lower(email), created_at DESC);
CREATE INDEX ix_email_verification_tokens_expires_at ON email_verification_tokens (expires_at);

-- Every email the service sends: written with the job that sends it (same transaction), marked
-- sent by that job. Rendering happens in the job from template + context.
CREATE TABLE outbound_emails (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid,
  recipient text NOT NULL,
  template text NOT NULL,
  context jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- The context holds a secret (a verification link): emptied once the mail is out.
  redact_after_send boolean NOT NULL DEFAULT false,
  subject text,
  transport text,
  sent_at timestamptz,
  failed_at timestamptz,
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT pk_outbound_emails PRIMARY KEY (id),
  CONSTRAINT fk_outbound_emails_user_id_users FOREIGN KEY (user_id)
    REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX ix_outbound_emails_created_at ON outbound_emails (created_at DESC);
CREATE INDEX ix_outbound_emails_user_id ON outbound_emails (user_id);
"""


def upgrade() -> None:
    op.execute(TABLES)
    for table in SYSTEM_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM anon, authenticated")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS outbound_emails, email_verification_tokens, siws_nonces")
