"""Property: any sequence of moves, by the seller through the API and by operators/jobs through
transition(), leaves an order whose history replays to its status and whose timestamps match
the history; exactly the moves the state machine allows succeed, the others change nothing.

The allowed moves are written out here again from docs/api.md's "Order states" (plus the documented
choices in refit/orders/states.py) on purpose: this table is the specification the code is
checked against, not a copy of the code's own table.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from refit.errors import Conflict
from refit.models import Order, OrderStatusHistory
from tests.orders.helpers import operator_move, place_order

SPEC: dict[str, set[str]] = {
    "pending": {"processing_shipment", "cancelled"},
    "processing_shipment": {"awaiting_shipment", "pending", "cancelled"},
    "awaiting_shipment": {"shipped", "cancelled"},
    "shipped": {"received"},
    "received": {"inspecting"},
    # returning: the operator's verdict "home" for a device that cannot be bought (docs/api.md).
    "inspecting": {"completed", "offer_pending", "returning"},
    "offer_pending": {"completed", "returning"},
    "returning": {"cancelled"},
    "completed": set(),
    "cancelled": set(),
}
# The seller's endpoints: (path suffix, target status, statuses it may be called from).
# Accepting a revised offer is not a move: the order stays offer_pending with
# offer_accepted_at set (the API has no status for it), and can then no longer be declined.
API_MOVES = {
    "ship": ("/ship", "shipped", {"awaiting_shipment"}),
    "cancel": ("/cancel", "cancelled", {"pending", "processing_shipment", "awaiting_shipment"}),
    "accept": ("/offer/accept", "offer_pending", {"offer_pending"}),
    "decline": ("/offer/decline", "returning", {"offer_pending"}),
}
MOVES = [("api", name) for name in API_MOVES] + [("operator", s) for s in SPEC]
STAMPS = {
    "shipped": "shipped_at",
    "received": "received_at",
    "completed": "completed_at",
    "cancelled": "cancelled_at",
}


def allowed(status: str, move: tuple[str, str]) -> bool:
    kind, name = move
    if kind == "api":
        return status in API_MOVES[name][2]
    return name in SPEC[status]


PROGRESS = [
    "pending",
    "processing_shipment",
    "awaiting_shipment",
    "shipped",
    "received",
    "inspecting",
    "offer_pending",
    "returning",
    "completed",
]


def forward(status: str, move: tuple[str, str]) -> bool:
    target = API_MOVES[move[1]][1] if move[0] == "api" else move[1]
    return target in PROGRESS and PROGRESS.index(target) > PROGRESS.index(status)


# Each step tries a move that makes progress (so sequences reach the deep states), any allowed
# move (cancellations, the label-failed retreat) or any move at all (forbidden ones included,
# from every state): 6, 2 and 2 chances in 10.
steps = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 10_000)), min_size=1, max_size=20)


def choose(status: str, mode: int, pick: int) -> tuple[str, str]:
    options: list[tuple[str, str]] = []
    if mode < 6:
        options = [m for m in MOVES if allowed(status, m) and forward(status, m)]
    if mode < 8 and not options:
        options = [m for m in MOVES if allowed(status, m)]
    options = options or MOVES
    return options[pick % len(options)]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
async def test_random_move_sequences_keep_the_order_consistent(client, resources, make_user, plan):
    seller = await make_user()
    order_id = (await place_order(client, resources, seller))["id"]
    status = "pending"
    accepted = False
    expected_actors = ["user"]

    for mode, pick in plan:
        move = choose(status, mode, pick)
        ok = allowed(status, move)
        kind, name = move
        refused_code = "invalid_transition"
        if move == ("api", "decline") and ok and accepted:
            ok, refused_code = False, "offer_already_accepted"
        if move == ("operator", "completed") and status == "offer_pending" and not accepted:
            ok, refused_code = False, "offer_not_accepted"  # never pay an unaccepted offer
        if kind == "api":
            suffix, target, _ = API_MOVES[name]
            response = await client.post(f"/api/orders/{order_id}{suffix}", headers=seller.headers)
            if ok:
                assert response.status_code == 200, (status, move, response.text)
            else:
                assert response.status_code == 409, (status, move, response.text)
                assert response.json()["code"] == refused_code
        else:
            target = name
            try:
                await operator_move(resources, order_id, target)
                moved = True
            except Conflict as exc:
                assert exc.code == refused_code
                moved = False
            assert moved == ok, (status, move)
        if ok and move == ("api", "accept"):
            accepted = True  # no status change, so no history row
        elif ok:
            status = target
            expected_actors.append("user" if kind == "api" else "operator")

        order = (await client.get(f"/api/orders/{order_id}", headers=seller.headers)).json()
        assert order["status"] == status
        assert (order["offer_accepted_at"] is not None) == accepted
        _replays(order, expected_actors)

    event(f"ended in {status}")
    await _timestamps_match_history(resources, uuid.UUID(order_id))


def _replays(order: dict, expected_actors: list[str]) -> None:
    history = order["status_history"]
    assert [h["actor"] for h in history] == expected_actors
    assert history[0]["from_status"] is None and history[0]["status"] == "pending"
    for before, after in itertools.pairwise(history):
        assert after["from_status"] == before["status"]
        assert after["status"] in SPEC[before["status"]]
        assert dt.datetime.fromisoformat(after["created_at"]) >= dt.datetime.fromisoformat(
            before["created_at"]
        )
    assert history[-1]["status"] == order["status"]


async def _timestamps_match_history(resources, order_id: uuid.UUID) -> None:
    async with resources.sessionmaker() as session:
        order = await session.get(Order, order_id)
        history = (
            await session.scalars(
                select(OrderStatusHistory)
                .where(OrderStatusHistory.order_id == order_id)
                .order_by(OrderStatusHistory.created_at)
            )
        ).all()
    # The last time each status was entered. pending and processing_shipment can repeat (a
    # label that failed for good sends the order back); the stamped ones are entered once.
    entered = {h.status: h.created_at for h in history}
    for status in [*STAMPS, "offer_pending"]:
        assert sum(h.status == status for h in history) <= 1, status
    for status, column in STAMPS.items():
        assert getattr(order, column) == entered.get(status), column
    if "offer_pending" in entered:
        assert order.offer_expires_at == entered["offer_pending"] + dt.timedelta(days=14)
    else:
        assert order.offer_expires_at is None
