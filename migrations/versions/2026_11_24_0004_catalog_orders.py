"""Device catalog, quotes and idempotency keys.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Reserved in the chain so the domains can evolve in parallel; filled by its issue's work.
"""

from collections.abc import Sequence

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
