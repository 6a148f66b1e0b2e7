"""The order state machine: which status may follow which. `service.transition()` is its one
door; anything not listed here is a 409 `invalid_transition`. The statuses are exactly the
ten of docs/api.md (the clients are built against them).

pending ──► processing_shipment ──► awaiting_shipment ──► shipped ──► received ──► inspecting
   │            │    ▲                    │                                     │    │    │
   │            │    └─(label failed)─┐   │                                     │    │    ▼
   ▼            ▼                     │   ▼                     offer_pending ◄─┘    │ completed
cancelled ◄─────┴─────────────────────┴── cancelled              │    │ (accepted, │    ▲
   ▲                                                             │    └── paid) ───┼────┘
   └──────────────────────── returning ◄── declined / no answer ─┘                 │
                                 ▲                                                 │
                                 └──────────── unbuyable (e.g. activation lock) ───┘

Choices, and why:
- processing_shipment → pending: allowed so a label that can never be bought can be given
  up on (the seller fixes the address and buys again). The label job does not take it: a
  job out of attempts leaves the order in processing_shipment with `label_error` set, and
  operators retry it.
- cancelled only before the device is in transit (pending, processing_shipment,
  awaiting_shipment); a label bought or being bought is then refunded (follow_ups.py says
  which jobs follow which move).
- A revised offer (offer_pending) is answered by the seller or expires. Accepting is not a
  status (docs/api.md has none for it): it stamps `offer_accepted_at` and the order stays
  offer_pending until the payout is confirmed on chain (→ completed), like inspecting →
  completed when the device matched its quote. Declining, or no answer in
  `offer_response_days`, → returning: the default is to give the device back, never to
  accept for the seller. An accepted offer can no longer be declined or expire
  (refit/orders/offers.py).
- inspecting → returning: the inspection found a device we cannot buy (activation lock on,
  or it does not power on and its grade is not one meant for a dead device): it goes home,
  with no offer to answer (refit/inspection/service.py).
- returning → cancelled once the device is back with the seller (no payout).
- completed and cancelled are final.
- imported (history from the browser app's storage, refit/orders/imported.py) has no move
  at all: nothing it carries may enter a queue, buy a label or be paid. A seller who wants
  to go on with it makes a new order ("continue"), which links the two.
"""

from __future__ import annotations

from refit.models.order import OrderStatus

S = OrderStatus

ALLOWED_MOVES: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING: frozenset({S.PROCESSING_SHIPMENT, S.CANCELLED}),
    S.PROCESSING_SHIPMENT: frozenset({S.AWAITING_SHIPMENT, S.PENDING, S.CANCELLED}),
    S.AWAITING_SHIPMENT: frozenset({S.SHIPPED, S.CANCELLED}),
    S.SHIPPED: frozenset({S.RECEIVED}),
    S.RECEIVED: frozenset({S.INSPECTING}),
    S.INSPECTING: frozenset({S.COMPLETED, S.OFFER_PENDING, S.RETURNING}),
    S.OFFER_PENDING: frozenset({S.COMPLETED, S.RETURNING}),
    S.RETURNING: frozenset({S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.IMPORTED: frozenset(),
}

# What the seller may cancel themselves: before the device is in transit.
SELLER_CANCELLABLE = frozenset({S.PENDING, S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT})

# The timestamp column stamped when an order enters a status.
STAMPS: dict[OrderStatus, str] = {
    S.SHIPPED: "shipped_at",
    S.RECEIVED: "received_at",
    S.COMPLETED: "completed_at",
    S.CANCELLED: "cancelled_at",
}
