"""Who may open a stream: the order's seller, with their Bearer token or a ticket made for
that order from a live session. Every refusal is problem+json and nothing is streamed."""

from __future__ import annotations

import json
import uuid

from refit.auth.tokens import decode_access_token
from refit.events import tickets
from tests.events.sse import Comment, open_stream
from tests.orders.helpers import place_order


async def _refused(http, order_id, status, code, *, headers=None, params=None):
    async with http.stream(
        "GET", f"/api/orders/{order_id}/events", headers=headers, params=params
    ) as response:
        body = await response.aread()  # ends: a refusal, not a stream
    assert response.status_code == status, body
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status and problem["code"] == code, problem


async def _ticket(http, order_id, headers) -> str:
    response = await http.post(f"/api/orders/{order_id}/events/ticket", headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert 0 < answer["expires_in"] <= 60
    return answer["ticket"]


async def test_a_ticket_opens_its_own_order_only(live, resources, settings, make_user):
    seller, other = await make_user(), await make_user()
    order = await place_order(live.http, resources, seller)
    second = await place_order(live.http, resources, seller)
    theirs = await place_order(live.http, resources, other)
    ticket = await _ticket(live.http, order["id"], seller.headers)

    async with open_stream(live.http, order["id"], params={"ticket": ticket}) as stream:
        first = await stream.next_event()
        assert first.json()["order_id"] == order["id"] and first.status == "pending"

    # Another seller's order: no ticket, and no stream with their own token.
    answer = await live.http.post(
        f"/api/orders/{theirs['id']}/events/ticket", headers=seller.headers
    )
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "order_not_found"
    await _refused(live.http, theirs["id"], 404, "order_not_found", headers=seller.headers)
    missing = uuid.uuid4()
    answer = await live.http.post(f"/api/orders/{missing}/events/ticket", headers=seller.headers)
    assert answer.status_code == 404 and answer.json()["code"] == "order_not_found"

    # The ticket of order A on order B, even the same seller's.
    await _refused(live.http, second["id"], 401, "ticket_wrong_order", params={"ticket": ticket})
    # An access token is not a ticket, and a ticket is not an access token.
    token = {"ticket": seller.token}
    await _refused(live.http, order["id"], 401, "invalid_ticket", params=token)
    as_bearer = {"Authorization": f"Bearer {ticket}"}
    await _refused(live.http, order["id"], 401, "invalid_token", headers=as_bearer)
    for path in (f"/api/orders/{order['id']}", "/api/orders", "/api/auth/me"):
        response = await live.http.get(path, headers=as_bearer)
        assert response.status_code == 401, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_token", path
    response = await live.http.post(f"/api/orders/{order['id']}/events/ticket", headers=as_bearer)
    assert response.status_code == 401 and response.json()["code"] == "invalid_token"
    # Nothing at all, and garbage.
    await _refused(live.http, order["id"], 401, "no_token")
    await _refused(live.http, order["id"], 401, "invalid_ticket", params={"ticket": "x.y.z"})

    # An expired ticket (its session still live).
    claims = decode_access_token(settings, seller.token)
    stale = tickets.issue_ticket(
        settings.model_copy(update={"stream_ticket_ttl_seconds": -5}),
        claims,
        uuid.UUID(order["id"]),
    )
    await _refused(live.http, order["id"], 401, "ticket_expired", params={"ticket": stale.token})

    # Signed out: the session's open stream ends, and its tickets go with it.
    async with open_stream(live.http, order["id"], headers=seller.headers) as stream:
        assert (await stream.next_event()).status == "pending"
        signed_out = await live.http.post("/api/auth/sign-out", headers=seller.headers)
        assert signed_out.status_code == 204
        while (item := await stream.next(timeout=5)) is not None:
            assert isinstance(item, Comment), item
    await _refused(live.http, order["id"], 401, "token_revoked", params={"ticket": ticket})
    await _refused(live.http, order["id"], 401, "token_revoked", headers=seller.headers)
