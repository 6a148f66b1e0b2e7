from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict


class UserRead(BaseModel):
    """A seller as the API shows them (GET /api/auth/me, connect-wallet, email confirm)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    wallet_address: str
    email: str | None
    email_verified: bool
    created_at: dt.datetime
