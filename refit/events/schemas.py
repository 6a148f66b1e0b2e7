"""What the order-events endpoints send."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from sse_starlette import ServerSentEvent

from refit.orders.schemas import StatusChange


class OrderEvent(StatusChange):
    """One status change as a stream event: a history row, with the same seller-safe actor
    ("user", "operator", "system") as the order's `status_history`."""

    id: uuid.UUID
    order_id: uuid.UUID

    def as_sse(self) -> ServerSentEvent:
        return ServerSentEvent(self.model_dump_json(), event="status", id=str(self.id))


class StreamTicketRead(BaseModel):
    ticket: str
    expires_in: int
