"""Which actions an operator is offered on an order: only those their role and the order's
state allow (the same rules the services enforce; the screen just does not offer the rest)."""

from __future__ import annotations

from refit.backoffice.schemas import AdminOrderDetail
from refit.dashboard.session import DashboardOperator
from refit.inspection.evidence import EVIDENCE_STATUSES
from refit.models import OrderStatus
from refit.models.payout import PayoutStatus
from refit.orders.states import SELLER_CANCELLABLE
from refit.payouts.service import waits_for_payout

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
    "payout_retried": "Payout retried: the worker signs a new transfer once the chain shows "
    "the failed one moved nothing.",
    "payout_cancelled": "Payout cancelled: pay again, revise the offer, or send the device home.",
    "payout_released": "Payout released: the worker screens it again and signs it.",
    "payout_resolved": "Payout resolved with the transfer found: the order is completed.",
}


def ready_to_pay(story: AdminOrderDetail) -> bool:
    # The pay request's own rule (payouts.service), on the order as the story read it.
    return story.payout is None and waits_for_payout(story.order)


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
