"""Operators for tests: a row in the database and a token minted as POST /api/admin/login
mints it."""

from __future__ import annotations

import secrets
import uuid

from refit.admin import operators
from refit.admin.tokens import issue_operator_token
from refit.models import Operator, OperatorRole
from refit.resources import Resources


async def make_operator(
    resources: Resources,
    role: str = "admin",
    username: str | None = None,
    password: str | None = None,
) -> Operator:
    """An enabled operator (a random password unless one is given), made as `refit operator
    create` makes one: an admin works at once, without a second admin's approval."""
    async with resources.sessionmaker() as session, session.begin():
        return await operators.create_operator(
            session,
            username or f"op-{uuid.uuid4().hex[:12]}",
            password or secrets.token_urlsafe(16),
            OperatorRole(role),
            created_by="cli:tests",
        )


def bearer_for(resources: Resources, operator: Operator) -> dict[str, str]:
    token = issue_operator_token(resources.settings, operator)
    return {"Authorization": f"Bearer {token.token}"}


async def operator_headers(
    resources: Resources, role: str = "admin", username: str | None = None
) -> dict[str, str]:
    """`Authorization` for a new operator of this role, as after signing in."""
    return bearer_for(resources, await make_operator(resources, role, username))
