"""Four-eyes: an action on money another admin asked for (approving an over-cap payout, and
retrying, cancelling or releasing one) needs a second admin who is not the asker.

The one check every such action calls. Today it holds only that the two differ; the
operators' `created_by` and `created_at` make it hold against one person with two accounts
(issue 23: an admin the asker created, or one created after the request, cannot be the
second)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from refit.admin.deps import OperatorPrincipal
from refit.errors import ProblemError


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
    `requested_by` (an actor: "operator:<id>") at `requested_at`."""
    del session, requested_at, action, subject  # used by the rule to come
    if approver.actor == requested_by:
        raise ProblemError(
            "A second admin, not the one who asked, must do this",
            status=403,
            code="four_eyes_refused",
        )
