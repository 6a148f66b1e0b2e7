"""What the operators' API shows of a payout."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from refit.models.payout import PayoutStatus


class PayoutRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_id: uuid.UUID
    status: PayoutStatus
    amount_usd: Decimal
    amount_sol: Decimal | None
    sol_usd_rate: Decimal | None
    rate_source: str | None
    rate_at: dt.datetime | None
    lamports: int | None
    recipient: str
    treasury: str
    reference: str
    signature: str | None
    last_valid_block_height: int | None
    attempts: int
    requested_by: str
    approved_by: str | None
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    finalized_at: dt.datetime | None


class PayoutPage(BaseModel):
    """Newest first, a cursor page like every list: `next_cursor` is None on the last."""

    items: list[PayoutRead]
    next_cursor: str | None
