"""`GET /api/orders/{id}/events` (Server-Sent Events) and its ticket (docs/api.md "Orders").

The stream takes the seller's Bearer token or, for a browser's EventSource (no headers), a
ticket in `?ticket=`. Access is checked in one short seller read before anything is streamed,
so a refusal is an ordinary problem+json; another seller's order is a 404 as for every order
read. No session dependency here: a request's transaction would stay open for the stream's
lifetime.

The first events: with `Last-Event-ID` (or `?last_event_id=`), every change after that one;
an id that is not one of this order's events gets the whole history, so a client never misses
one. Without it, the latest change: the order's current status, whose id the client can
resume from, and which closes the gap between reading the order and opening the stream.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sse_starlette import EventSourceResponse

from refit import one_message, resources
from refit.auth import tokens
from refit.auth.deps import CurrentClaims, current_claims
from refit.events import stream, tickets
from refit.events.listener import OrderEventsListener
from refit.events.schemas import StreamTicketRead
from refit.logs import SELLER_ID_STATE
from refit.orders.service import order_not_found

router = APIRouter(prefix="/api/orders", tags=["orders"])

_bearer = HTTPBearer(auto_error=False, description="Access token from connect-wallet")
# A ticket is a few hundred characters; anything far longer is not one.
_MAX_TICKET = 2048
SHUTDOWN_GRACE_SECONDS = 2.0


async def stream_claims(
    request: Request,
    order_id: uuid.UUID,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ticket: Annotated[str | None, Query(max_length=_MAX_TICKET)] = None,
) -> tokens.TokenClaims:
    """The stream's seller: from `?ticket=` when given (for this order only), else from the
    Bearer token exactly as every seller endpoint reads it."""
    if ticket is None:
        return await current_claims(request, credentials)
    # Valid, for this order, of a live session (signed out, its tickets are refused too),
    # and not used before: a ticket opens one stream.
    claims = await tickets.redeem_ticket(resources.current(), ticket, order_id)
    setattr(request.state, SELLER_ID_STATE, claims.user_id)
    return claims


StreamClaims = Annotated[tokens.TokenClaims, Depends(stream_claims)]

_EXISTS = "SELECT 1 FROM orders WHERE id = %(id)s"


@router.post("/{order_id}/events/ticket", response_model=StreamTicketRead)
async def stream_ticket(order_id: uuid.UUID, claims: CurrentClaims) -> StreamTicketRead:
    """A short-lived ticket for this order's event stream (`?ticket=`), for clients that
    cannot send an Authorization header (a browser's EventSource)."""
    res = resources.current()
    if not await one_message.fetch_as_user(res.engine, claims.user_id, _EXISTS, {"id": order_id}):
        raise order_not_found(order_id)
    ticket = tickets.issue_ticket(res.settings, claims, order_id)
    return StreamTicketRead(ticket=ticket.token, expires_in=ticket.expires_in)


def _event_id(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        # Not an id we ever sent: treated as one we cannot place, so everything is sent.
        return uuid.UUID(int=0)


@router.get(
    "/{order_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Status changes"}},
)
async def order_events(
    order_id: uuid.UUID,
    request: Request,
    claims: StreamClaims,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(max_length=64)] = None,
) -> EventSourceResponse:
    """Server-Sent Events: `event: status`, `id:` the change's id, `data:` the change as
    JSON; a comment line now and then on a quiet stream. Ends when the session's token
    expires (reconnect with a fresh token or ticket and `Last-Event-ID`)."""
    res = resources.current()
    after = _event_id(last_event_id_header or last_event_id)
    first = await stream.read_events(res, claims.user_id, order_id, after=after)
    listener: OrderEventsListener = request.app.state.order_events_listener
    stopping = anyio.Event()
    return EventSourceResponse(
        stream.order_stream(res, listener, claims, order_id, first, stopping),
        # Heartbeats come from the stream itself, only when it has been quiet.
        ping=0,
        # When the server stops: set, and the stream gets this long to end by itself.
        shutdown_event=stopping,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
    )
