"""Four-eyes: an action on money another admin asked for (approving an over-cap payout, and
retrying, cancelling or releasing one), and letting a new admin work, need a second admin
that one person cannot conjure up.

The second admin must not be the asker, must be an approved and enabled admin, must not have
been made by the asker, and must have existed before the request: an admin who makes a second
account, before or after asking, cannot approve with it. One level only: an admin made by
someone the asker made is not caught (ARCHITECTURE.md, "Four-eyes: what it protects against
and what it does not"). Every refusal is kept in `operator_audit`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.admin import audit
from refit.admin.deps import OperatorPrincipal
from refit.errors import ProblemError
from refit.models import AuditOutcome, Operator, OperatorRole
from refit.transactions import service_transaction


class FourEyesRefused(ProblemError):
    status, code = 403, "four_eyes_refused"


async def _why_not(
    session: AsyncSession, approver: OperatorPrincipal, requested_by: str, requested_at: dt.datetime
) -> str | None:
    if approver.actor == requested_by:
        return "A second admin, not the one who asked, must do this"
    row = (
        await session.execute(
            select(
                Operator.role,
                Operator.disabled_at,
                Operator.approved_at,
                Operator.approved_by,
                Operator.created_by,
                Operator.created_at,
            ).where(Operator.id == approver.id)
        )
    ).one_or_none()
    if row is None or row.role is not OperatorRole.ADMIN or row.disabled_at is not None:
        return "Only an enabled admin may be the second admin"
    if row.approved_at is None:
        return "An admin still waiting for a second admin's approval cannot be the second admin"
    if row.created_by == requested_by:
        return "An admin made by the one who asked cannot be the second admin"
    # Let in by the asker: else an account the asker's other account made, approved by the
    # asker, would pass (A makes X, a colleague approves X once, X makes Y, A approves Y).
    if row.approved_by == requested_by:
        return "An admin the one who asked approved cannot be the second admin"
    if row.created_at >= requested_at:
        return "An admin made after this was asked for cannot be the second admin"
    return None


async def require_second_admin(
    session: AsyncSession,
    *,
    approver: OperatorPrincipal,
    requested_by: str,
    requested_at: dt.datetime,
    action: str,
    subject: str,
) -> None:
    """403 (problem code `four_eyes_refused`) unless `approver` may be the second admin on
    `action` (e.g. "payout.approve") of `subject` (e.g. "payout:<id>"), asked for by
    `requested_by` (an actor: "operator:<id>") at `requested_at`. A refusal is recorded in
    `operator_audit` in a transaction of its own: the caller's rolls back with the 403."""
    reason = await _why_not(session, approver, requested_by, requested_at)
    if reason is None:
        return
    # Its own transaction (a second pooled connection, for a rare refusal): the record must
    # survive the rollback of the request it refuses.
    async with service_transaction() as own:
        await audit.record(
            own,
            approver.actor,
            action,
            subject,
            AuditOutcome.REFUSED,
            {"reason": reason, "requested_by": requested_by},
        )
    raise FourEyesRefused(reason)
