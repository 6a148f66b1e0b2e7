"""Which actions an operator is offered on an order: only those their role and the order's
state allow (the same rules the services enforce; the screen just does not offer the rest)."""

from __future__ import annotations

from refit.backoffice.schemas import AdminOrderDetail
from refit.dashboard.session import DashboardOperator
from refit.inspection.evidence import EVIDENCE_STATUSES
from refit.models import OrderStatus
from refit.models.payout import PayoutStatus
from refit.models.shipping import ReturnShipment, ReturnStatus
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
    "label_retried": "Label purchase queued again: the worker buys it (never a second one).",
    "refund_queued": "Label refund queued: the worker asks the carrier for it.",
    "sent_home": "On its way home: the worker buys the insured return label.",
    "handed_over": "Marked as handed to the carrier.",
}


def ready_to_pay(story: AdminOrderDetail) -> bool:
    # The pay request's own rule (payouts.service), on the order as the story read it: no
    # payout yet, or a cancelled one (paying again re-opens it).
    unpaid = story.payout is None or story.payout.status is PayoutStatus.CANCELLED
    return unpaid and waits_for_payout(story.order)


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


# What the way home and the labels offer (dashboard/returns.py); the services refuse the rest.
HOME_BOUGHT = (ReturnStatus.PURCHASED, ReturnStatus.DELIVERED)


def label_moves(
    story: AdminOrderDetail, home: ReturnShipment | None, operator: DashboardOperator
) -> set[str]:
    order = story.order
    status = order.status
    found: set[str] = set()
    payout_stopped = story.payout is None or story.payout.status is PayoutStatus.CANCELLED
    if status in (S.INSPECTING, S.OFFER_PENDING) and payout_stopped:
        found.add("send_home")
    bought = home is not None and home.status in HOME_BOUGHT
    if status is S.RETURNING and home is not None and bought:
        found.add("print_return_label")
        if home.handed_over_at is None and home.status is ReturnStatus.PURCHASED:
            found.add("hand_over")
    if status is S.RETURNING and (home is None or home.status is ReturnStatus.FAILED):
        found.add("buy_return_label")
    if not operator.is_admin:
        return found
    if status is S.PROCESSING_SHIPMENT and order.label_error:
        found.add("retry_label")
    if status is S.CANCELLED and (order.label_transaction_id or order.label_file_key):
        found.add("refund_label")
    return found
