"""Which actions an operator is offered on an order: only those their role and the order's
state allow (the same rules the services enforce; the screen just does not offer the rest)."""

from __future__ import annotations

from refit.dashboard.session import DashboardOperator
from refit.inspection.evidence import EVIDENCE_STATUSES
from refit.inspection.schemas import AdminOrderDetail
from refit.models import OrderStatus
from refit.models.inspection import Outcome
from refit.models.payout import PayoutStatus
from refit.orders.states import SELLER_CANCELLABLE

S = OrderStatus

# What a redirect after an action says it did (?done=<code>): fixed texts, never echoed input.
DONE = {
    "received": "Marked as received at the warehouse.",
    "inspection_started": "Inspection started.",
    "inspected": "Verdict recorded.",
    "photos": "Photos added to the evidence.",
    "pay_requested": "Payout requested: the worker signs and sends it.",
    "approval_requested": "Payout requested: over the per-payout cap, a second admin approves.",
    "approved": "Payout approved: the worker signs and sends it.",
    "cancelled": "Order cancelled.",
}


def ready_to_pay(story: AdminOrderDetail) -> bool:
    order = story.order
    if story.payout is not None or not order.final_price_usd:
        return False
    if order.status is S.INSPECTING:
        return story.inspection is not None and story.inspection.outcome is Outcome.AS_QUOTED
    return order.status is S.OFFER_PENDING and order.offer_accepted_at is not None


def allowed(story: AdminOrderDetail, operator: DashboardOperator) -> set[str]:
    status = story.order.status
    found: set[str] = set()
    if status in (S.AWAITING_SHIPMENT, S.SHIPPED):
        found.add("receive")
    if status is S.RECEIVED:
        found.add("start_inspection")
    if status is S.INSPECTING and story.inspection is None:
        found.add("inspect")
    if status in EVIDENCE_STATUSES:
        found.add("photos")
    if not operator.is_admin:
        return found
    if ready_to_pay(story):
        found.add("pay")
    payout = story.payout
    if (
        payout is not None
        and payout.status is PayoutStatus.AWAITING_APPROVAL
        and payout.requested_by != operator.actor
    ):
        found.add("approve")
    if status in SELLER_CANCELLABLE:
        found.add("cancel")
    return found
