"""What the operators' API shows of a payout."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from refit.models.payout import HoldReason, PayoutStatus


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
    hold_reason: HoldReason | None
    created_at: dt.datetime
    updated_at: dt.datetime
    finalized_at: dt.datetime | None


class PayoutPage(BaseModel):
    """Newest first, a cursor page like every list: `next_cursor` is None on the last."""

    items: list[PayoutRead]
    next_cursor: str | None


class PayoutResolve(BaseModel):
    """The transaction found on chain that paid this payout (base-58 signature)."""

    signature: str = Field(min_length=64, max_length=88, pattern=r"^[1-9A-HJ-NP-Za-km-z]+$")
