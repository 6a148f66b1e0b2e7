from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from refit.admin.operators import MAX_PASSWORD_LENGTH
from refit.models import OperatorRole


class OperatorLogin(BaseModel):
    # Loose bounds: a name that cannot exist is answered like a wrong password (401).
    username: str = Field(min_length=1, max_length=256, examples=["ada"])
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class OperatorRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    role: OperatorRole


class OperatorListed(OperatorRead):
    disabled_at: dt.datetime | None
    created_at: dt.datetime
    last_login_at: dt.datetime | None
    # "operator:<id>" or "cli:<login>"; null for operators made before this was recorded.
    created_by: str | None
    # Null: an admin made by another admin, waiting for a second admin's approval.
    approved_at: dt.datetime | None
    approved_by: str | None


class OperatorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=2, max_length=32, examples=["grace"])
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    role: OperatorRole


class OperatorSession(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth token type's name, not a secret)
    expires_in: int
    operator: OperatorRead
