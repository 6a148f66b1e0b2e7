"""The state machine's door: concurrent moves, the seller's endpoints, stamps and emails."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select, text, update

from refit.errors import Conflict, NotFound
from refit.models import Order, OrderStatus, OrderStatusHistory
from refit.notifications.render import render
from refit.orders.service import transition
from tests.locks import backend_pid, wait_until_waiting_on_lock
from tests.orders.helpers import operator_move, place_order

S = OrderStatus
TO_AWAITING = [S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT]
TO_OFFER = [*TO_AWAITING, S.SHIPPED, S.RECEIVED, S.INSPECTING, S.OFFER_PENDING]


async def _history(resources, order_id) -> list[tuple[str | None, str, str]]:
    async with resources.sessionmaker() as session:
        rows = await session.scalars(
            select(OrderStatusHistory)
            .where(OrderStatusHistory.order_id == order_id)
            .order_by(OrderStatusHistory.created_at)
        )
        return [(h.from_status, h.status, h.actor) for h in rows]


async def _walk(resources, order_id, steps) -> None:
    for step in steps:
        await operator_move(resources, order_id, step)


async def _move_in_own_session(resources, order_id, to_status):
    async with resources.sessionmaker() as session, session.begin():
        order = await transition(session, order_id, to_status, actor="operator:racer")
        return order.status


@pytest.mark.parametrize(
    ("first", "second"),
    [(S.SHIPPED, S.CANCELLED), (S.CANCELLED, S.CANCELLED), (S.SHIPPED, S.SHIPPED)],
)
async def test_two_concurrent_transitions_one_wins(client, resources, make_user, first, second):
    """The second move starts while the first holds the order's row lock, and PostgreSQL shows
    it waiting there; once the first commits, the second sees the new status and is refused."""
    seller = await make_user()
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    await _walk(resources, order_id, TO_AWAITING)

    async with resources.sessionmaker() as session, session.begin():
        order = await transition(session, order_id, first, actor="operator:racer")
        won = order.status
        holder = await backend_pid(session)
        second_move = asyncio.create_task(_move_in_own_session(resources, order_id, second))
        try:
            await wait_until_waiting_on_lock(resources.engine, blocked_by=holder)
        except BaseException:
            second_move.cancel()
            raise
    with pytest.raises(Conflict) as lost:
        await second_move
    assert won == first
    assert lost.value.code == "invalid_transition" and lost.value.status == 409
    history = await _history(resources, order_id)
    assert len(history) == 4  # created, processing, awaiting, and ONE of the two moves
    assert history[-1][1] == first


async def test_two_concurrent_requests_one_wins(client, resources, make_user):
    """Both requests are in flight together, queued on the order's row lock (held here until
    PostgreSQL shows both waiting): one ships or cancels, the other is refused."""
    seller = await make_user()
    order_id = (await place_order(client, resources, seller))["id"]
    await _walk(resources, uuid.UUID(order_id), TO_AWAITING)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            select(Order.id).where(Order.id == uuid.UUID(order_id)).with_for_update()
        )
        requests = asyncio.gather(
            client.post(f"/api/orders/{order_id}/ship", headers=seller.headers),
            client.post(f"/api/orders/{order_id}/cancel", headers=seller.headers),
        )
        try:
            await wait_until_waiting_on_lock(resources.engine, count=2)
        except BaseException:
            requests.cancel()
            raise
    ship, cancel = await requests
    assert sorted([ship.status_code, cancel.status_code]) == [200, 409]
    loser = ship if ship.status_code == 409 else cancel
    assert loser.json()["code"] == "invalid_transition"
    assert loser.headers["content-type"] == "application/problem+json"
    assert len(await _history(resources, uuid.UUID(order_id))) == 4


async def test_ship_stamps_shipped_at_from_the_history(client, resources, make_user):
    seller = await make_user()
    order_id = (await place_order(client, resources, seller))["id"]
    early = await client.post(f"/api/orders/{order_id}/ship", headers=seller.headers)
    assert early.status_code == 409
    assert early.json()["current_status"] == "pending"
    await _walk(resources, uuid.UUID(order_id), TO_AWAITING)
    response = await client.post(f"/api/orders/{order_id}/ship", headers=seller.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "shipped"
    last = body["status_history"][-1]
    assert (last["from_status"], last["status"], last["actor"]) == (
        "awaiting_shipment",
        "shipped",
        "user",
    )
    assert body["shipped_at"] == last["created_at"]
    assert (await _history(resources, uuid.UUID(order_id)))[-1][2] == f"user:{seller.id}"


@pytest.mark.parametrize("state", [S.PENDING, S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT])
async def test_cancel_before_transit(client, resources, make_user, state):
    seller = await make_user()
    order_id = (await place_order(client, resources, seller))["id"]
    await _walk(
        resources,
        uuid.UUID(order_id),
        TO_AWAITING[: TO_AWAITING.index(state) + 1] if state != S.PENDING else [],
    )
    response = await client.post(
        f"/api/orders/{order_id}/cancel",
        json={"reason": "changed my mind"},
        headers=seller.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["cancelled_at"] == body["status_history"][-1]["created_at"]
    assert body["status_history"][-1]["notes"] == "changed my mind"


@pytest.mark.parametrize("state", [S.SHIPPED, S.RECEIVED, S.OFFER_PENDING])
async def test_no_cancel_once_in_transit(client, resources, make_user, state):
    seller = await make_user()
    order_id = (await place_order(client, resources, seller))["id"]
    await _walk(resources, uuid.UUID(order_id), TO_OFFER[: TO_OFFER.index(state) + 1])
    before = await _history(resources, uuid.UUID(order_id))
    response = await client.post(f"/api/orders/{order_id}/cancel", headers=seller.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    assert await _history(resources, uuid.UUID(order_id)) == before


async def test_offer_accept_and_decline(client, resources, make_user):
    seller = await make_user()
    first = (await place_order(client, resources, seller))["id"]
    second = (await place_order(client, resources, seller))["id"]
    for order_id in (first, second):
        async with resources.sessionmaker() as session, session.begin():
            await session.execute(
                update(Order).where(Order.id == uuid.UUID(order_id)).values(final_price_usd=300)
            )
        await _walk(resources, uuid.UUID(order_id), TO_OFFER)

    accepted = await client.post(f"/api/orders/{first}/offer/accept", headers=seller.headers)
    assert accepted.status_code == 200
    # The API has no status for an accepted offer: it stays offer_pending until it is paid.
    assert accepted.json()["status"] == "offer_pending"
    assert accepted.json()["offer_accepted_at"] is not None
    assert accepted.json()["final_price_usd"] == "300.00"
    twice = await client.post(f"/api/orders/{first}/offer/accept", headers=seller.headers)
    assert twice.json()["offer_accepted_at"] == accepted.json()["offer_accepted_at"]
    declined = await client.post(f"/api/orders/{second}/offer/decline", headers=seller.headers)
    assert declined.json()["status"] == "returning"
    assert declined.json()["offer_accepted_at"] is None
    # Answered once: the other answer is no longer possible.
    again = await client.post(f"/api/orders/{first}/offer/decline", headers=seller.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "offer_already_accepted"
    accept_declined = await client.post(
        f"/api/orders/{second}/offer/accept", headers=seller.headers
    )
    assert accept_declined.json()["code"] == "invalid_transition"
    # The offer window: settings.offer_response_days after the offer was made.
    body = accepted.json()
    offer_row = next(h for h in body["status_history"] if h["status"] == "offer_pending")
    async with resources.sessionmaker() as session:
        delta = await session.scalar(
            select(Order.offer_expires_at - text(":made")).where(Order.id == uuid.UUID(first)),
            {"made": offer_row["created_at"]},
        )
    assert delta.days == 14 and delta.seconds == 0


async def test_expired_offer_cannot_be_accepted(client, resources, make_user):
    seller = await make_user()
    order_id = (await place_order(client, resources, seller))["id"]
    await _walk(resources, uuid.UUID(order_id), TO_OFFER)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == uuid.UUID(order_id))
            .values(offer_expires_at=func.now() - text("interval '1 minute'"))
        )
    response = await client.post(f"/api/orders/{order_id}/offer/accept", headers=seller.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "offer_expired"
    # Declining is what expiry does anyway: still allowed.
    response = await client.post(f"/api/orders/{order_id}/offer/decline", headers=seller.headers)
    assert response.json()["status"] == "returning"


async def test_final_states_go_nowhere(client, resources, make_user):
    seller = await make_user()
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    await _walk(resources, order_id, [*TO_OFFER[:-1], S.COMPLETED])
    for target in S:
        with pytest.raises(Conflict) as raised:
            await operator_move(resources, order_id, target)
        assert raised.value.code == "invalid_transition"


async def test_actor_must_say_who(client, resources, make_user):
    seller = await make_user()
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    with pytest.raises(ValueError, match="actor"):
        await operator_move(resources, order_id, S.CANCELLED, actor="bob")


async def test_unknown_order_is_404(resources):
    with pytest.raises(NotFound) as raised:
        await operator_move(resources, uuid.uuid4(), S.CANCELLED)
    assert raised.value.code == "order_not_found"


async def test_status_email_is_queued_with_the_move(client, resources, make_user, run_jobs):
    seller = await make_user(email="seller@example.com")
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE users SET email_verified = true WHERE id = :id"), {"id": seller.id}
        )
    order = await place_order(client, resources, seller)
    await _walk(resources, uuid.UUID(order["id"]), TO_AWAITING)
    await run_jobs()  # notifications.notify_user, deferred by name with the move
    async with resources.sessionmaker() as session:
        mails = (
            await session.execute(text("SELECT recipient, template, context FROM outbound_emails"))
        ).all()
    assert [(m.recipient, m.template) for m in mails] == [
        ("seller@example.com", "order_label_ready")
    ]
    context = mails[0].context
    assert context["order_number"] == order["order_number"]
    assert context["quoted_price_usd"] == "442.00"
    # The template renders from what transition() put in the context (no missing variable).
    rendered = render(resources.settings, "order_label_ready", context)
    assert order["order_number"] in rendered.subject


async def test_an_unaccepted_revised_offer_is_never_completed(client, resources, make_user):
    seller = await make_user()
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    await _walk(resources, order_id, TO_OFFER)
    with pytest.raises(Conflict) as refused:
        await operator_move(resources, order_id, S.COMPLETED)
    assert refused.value.code == "offer_not_accepted"
    assert (
        await client.post(f"/api/orders/{order_id}/offer/accept", headers=seller.headers)
    ).status_code == 200
    await operator_move(resources, order_id, S.COMPLETED)
    order = (await client.get(f"/api/orders/{order_id}", headers=seller.headers)).json()
    assert order["status"] == "completed" and order["completed_at"] is not None
