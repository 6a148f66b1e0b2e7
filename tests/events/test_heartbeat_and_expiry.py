"""A quiet stream carries heartbeat comments, and it ends when the session's access token
expires: with a Bearer token at its expiry, with a ticket at the expiry of the token it was
made from (not the ticket's own, which only has to hold while the stream is opened)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

from refit.auth.tokens import decode_access_token, issue_access_token
from refit.events import tickets
from tests.events.conftest import HEARTBEAT_SECONDS
from tests.events.sse import Comment, Event, Stream, open_stream
from tests.orders.helpers import place_order

TOKEN_SECONDS = 5


async def _until_the_end(stream: Stream) -> tuple[list[Event], list[tuple[float, Comment]], float]:
    events, comments = [], []
    while (item := await stream.next(timeout=TOKEN_SECONDS + 5)) is not None:
        if isinstance(item, Event):
            events.append(item)
        else:
            comments.append((time.time(), item))
    return events, comments, time.time()


async def test_heartbeats_then_the_end_at_the_token_expiry(live, resources, settings, make_user):
    seller = await make_user()
    order = await place_order(live.http, resources, seller)
    order_id = uuid.UUID(order["id"])
    short = issue_access_token(
        settings.model_copy(update={"access_token_ttl_seconds": TOKEN_SECONDS}), seller.id
    ).token
    session = decode_access_token(settings, short)
    # A ticket that expires well before the session does.
    ticket = tickets.issue_ticket(
        settings.model_copy(update={"stream_ticket_ttl_seconds": 2}), session, order_id
    )
    ticket_expires = time.time() + ticket.expires_in

    async def follow(**how) -> tuple[list[Event], list[tuple[float, Comment]], float]:
        async with open_stream(live.http, order_id, **how) as stream:
            return await _until_the_end(stream)

    bearer, by_ticket = await asyncio.gather(
        follow(headers={"Authorization": f"Bearer {short}"}),
        follow(params={"ticket": ticket.token}),
    )
    for events, comments, ended in (bearer, by_ticket):
        assert [e.status for e in events] == ["pending"]
        # Ended by the server once the token's expiry passed, and promptly.
        assert session.expires_at <= ended < session.expires_at + 2
        # Heartbeats all along: a few seconds at a quarter of a second.
        assert len(comments) >= (TOKEN_SECONDS - 1) / HEARTBEAT_SECONDS / 2, comments
        assert {comment.text for _, comment in comments} == {"heartbeat"}
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(comments)]
        assert max(gaps) < HEARTBEAT_SECONDS * 8, gaps
    # The ticket's stream outlived the ticket.
    assert any(at > ticket_expires + 1 for at, _ in by_ticket[1])
