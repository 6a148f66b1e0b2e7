"""The operators' audit trail (`operator_audit`): its one writer.

What is done to operator accounts (made, approved, disabled) is recorded in the transaction
that does it, so the record and the change commit together. A four-eyes refusal is recorded
by refit/admin/four_eyes.py in a transaction of its own, as the request it refuses rolls back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from refit.models import AuditOutcome, OperatorAudit


async def record(
    session: AsyncSession,
    actor: str,
    action: str,
    subject: str,
    outcome: AuditOutcome | str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one row to the trail in `session`'s transaction: `actor` ("operator:<id>",
    "cli:<login>") did (or was refused) `action` ("operator.approve") on `subject`
    ("operator:<username>", "payout:<id>")."""
    session.add(
        OperatorAudit(
            actor=actor,
            action=action,
            subject=subject,
            outcome=AuditOutcome(outcome),
            detail=detail or {},
        )
    )
    await session.flush()
