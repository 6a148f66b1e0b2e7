"""Operators' authentication for /api/admin (HTTP Basic against REFIT_ADMIN_PASSWORD).

One shared password: the Basic username is only a label for the logs (anyone with the
password can give any name), so it is never written into an order's history as proof of who
acted. Operator accounts replace this.
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
