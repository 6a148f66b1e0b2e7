"""What the order-events endpoints send."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, PrivateAttr
from sse_starlette import ServerSentEvent

from refit.orders.schemas import StatusChange


class OrderEvent(StatusChange):
    """One status change as a stream event: a history row, with the same seller-safe actor
    ("user", "operator", "system") as the order's `status_history`."""

    id: uuid.UUID
    order_id: uuid.UUID
    _encoded: bytes | None = PrivateAttr(default=None)

    def as_sse(self) -> bytes:
        """The event as the stream sends it, encoded once: the streams woken by one change
        share the event objects of one read (stream.py), and send the same bytes."""
        if self._encoded is None:
            event = ServerSentEvent(self.model_dump_json(), event="status", id=str(self.id))
            self._encoded = event.encode()
        return self._encoded


class StreamTicketRead(BaseModel):
    ticket: str
    expires_in: int
