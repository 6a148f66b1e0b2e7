"""Operators' authentication for /api/admin (HTTP Basic against REFIT_ADMIN_PASSWORD).

The operators' dashboard will bring its own login; until then every operator action
carries the operator's name (the Basic username) into the order history.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from refit import resources
from refit.errors import Unauthorized

_basic = HTTPBasic(auto_error=False, realm="ReFit operators")


async def current_operator(
    request: Request,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> str:
    settings = resources.current().settings
    if credentials is None or not secrets.compare_digest(
        credentials.password.encode(), settings.admin_password.encode()
    ):
        raise Unauthorized(
            "Operator credentials required",
            code="operator_unauthorized",
            headers={"WWW-Authenticate": 'Basic realm="ReFit operators"'},
        )
    return credentials.username or "operator"


OperatorDep = Annotated[str, Depends(current_operator)]
