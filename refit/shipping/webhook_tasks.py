"""`shipping.handle_webhook`: one kept webhook (refit/shipping/webhooks.py) applied to its order.

A track update is a hint, whatever the order's state: the track is always read again from the
carrier (outside any transaction) and only that answer is recorded (the seller's tracking page
shows it) and acted on. A forged or stale body, even one carrying the right URL token, can at
most make us ask the carrier. Then, under the order's row lock:
the events the order lacks are recorded (shipping's one writer), the order moves forward
through `orders.service.transition()` (in transit → shipped, delivered to the warehouse →
received), and what needs a person is flagged. Moves only go forward, so an event arriving
late (TRANSIT after DELIVERED) adds its row and moves nothing.

The parcel may also be the device's way home (`shipping_returns`, metadata `return:<id>`): its
events are recorded as the return leg, and its delivery ends the order (returning →
cancelled); a return the carrier sends back or fails is flagged.
"""

from __future__ import annotations

import datetime as dt
import uuid

import procrastinate
import structlog
from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from refit import metrics, queue, resources, sweeps
from refit.carriers.interface import CarrierError, CarrierUnavailable, Tracking, TrackingStatus
from refit.carriers.picker import open_carrier, parse_track, parse_transaction
from refit.models import Order, OrderStatus
from refit.models.shipping import Leg, ReturnShipment, ReturnStatus, WebhookInbox
from refit.orders import follow_ups
from refit.orders.service import get_order, transition
from refit.settings import Settings
from refit.shipping import state, webhook_batch, webhook_inbox
from refit.shipping.webhooks import HANDLE_TASK
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

S = OrderStatus
T = TrackingStatus
ACTOR = "system:carrier-tracking"
# The order moves the carrier's word can make, in order, from where the order is.
FORWARD = {
    S.AWAITING_SHIPMENT: (S.SHIPPED, S.RECEIVED),
    S.SHIPPED: (S.RECEIVED,),
}
# Statuses before the parcel should be moving: a scan then is worth a person's look.
NOT_YET_SHIPPED = frozenset({S.PENDING, S.PROCESSING_SHIPMENT, S.CANCELLED})
# Rows older than this with no live job are queued again by the sweep.
SWEEP_AFTER_SECONDS = 600


class LabelNotRecordedYet(CarrierError):
    """The update names an order whose label is still being recorded: try again shortly."""

    retryable = True


# Waits of 3 s, 9 s … 36 min: a label being recorded is seen within seconds, a carrier outage
# of an hour is waited out. Each failure is counted on the row (webhook_inbox.py).
@queue.queue.task(name=HANDLE_TASK, retry=queue.exponential_retry(8, 3), pass_context=True)
async def handle_webhook_task(context: procrastinate.JobContext, inbox_id: str) -> str:
    row_id = uuid.UUID(inbox_id)
    # A worker limited to some queues settles no other job than its own.
    queue = None if context.worker_queues else webhook_batch.Queue(context.job.worker_id)
    try:
        outcome = await handle(row_id, queue)
    except Exception as exc:
        if await webhook_inbox.record_failure(row_id, exc):
            # Given up on: no retry; the row says why, for an operator.
            return "given up"
        raise
    log.info("shipping.webhook_handled", inbox_id=inbox_id, outcome=outcome)
    return outcome


async def handle(inbox_id: uuid.UUID, queue: webhook_batch.Queue | None = None) -> str:
    """Handle the row. What needs no carrier (this row's handling, or waiting rows' when its
    worker is given as `queue`) is settled first, in a transaction of its own
    (refit/shipping/webhook_batch.py); a parcel of ours is followed below."""
    settled = await webhook_batch.settle(inbox_id, queue)
    if settled is not None:
        return settled
    async with service_transaction(job=True) as session:
        row = await session.get(WebhookInbox, inbox_id)
        if row is None or row.processed_at is not None or row.body is None:
            return "nothing to do"
        data = row.body["data"]
        if row.event == "transaction_updated":
            outcome, order_id = await _transaction_updated(session, data)
            _finish(row, outcome, order_id)
            return outcome
        if row.event != "track_updated":
            _finish(row, f"ignored: {row.event} events are not used", None)
            return "ignored"
        hint = parse_track(data)
        found = await _find_parcel(session, hint)
        if found is None:
            _finish(row, f"no order has tracking number {hint.tracking_number}", None)
            return "no matching order"
        order, leg, carrier_of_label = found
        order_id = order.id
        carrier_code = hint.carrier or (carrier_of_label or "").lower()

    # Every update, in every state of the order: what is recorded is shown to the seller, and
    # what is acted on moves or flags the order, so neither may come from the body. Outside
    # any transaction: the carrier may be slow, and no row is locked meanwhile.
    async with open_carrier(resources.current().settings, job=True) as carrier:
        truth = await carrier.get_tracking(carrier_code, hint.tracking_number)

    async with service_transaction(job=True) as session:
        order = await get_order(session, order_id, for_update=True)
        row = await session.get(WebhookInbox, inbox_id, with_for_update=True)
        if row is None or row.processed_at is not None:
            return "nothing to do"
        # The events as the carrier gave them; the body that prompted the read stays in the
        # inbox (linked to the order), not beside them.
        added = await state.record_tracking(
            session, order.id, truth, source="track_updated", leg=leg
        )
        if leg is Leg.RETURN:
            outcome = await _apply_return(session, order, truth)
        else:
            outcome = await _apply(session, resources.current().settings, order, truth)
        outcome = f"{len(added)} new event(s) ({leg.value}); {outcome}"
        _finish(row, outcome, order.id)
    return outcome


async def _find_parcel(
    session: AsyncSession, hint: Tracking
) -> tuple[Order, Leg, str | None] | None:
    """The order whose parcel this is, which of its parcels, and that label's carrier."""
    number = hint.tracking_number
    found = (
        await session.scalars(select(Order).where(Order.tracking_number == number).limit(2))
    ).all()
    if len(found) > 1:
        # Two orders claim one parcel (an imported order's number, say): moving either could
        # move the wrong one. The body stays in the inbox, unmatched, for an operator.
        log.warning("shipping.webhook_tracking_number_ambiguous", tracking_number=number)
        return None
    if found:
        return found[0], Leg.INBOUND, found[0].shipping_carrier
    home = await session.scalar(
        select(ReturnShipment).where(ReturnShipment.tracking_number == number)
    )
    if home is not None:
        order = await session.get(Order, home.order_id)
        if order is not None:
            return order, Leg.RETURN, home.carrier
    named = webhook_batch.named_order(hint.metadata, "order:")
    if named is not None:
        order = await session.get(Order, named)
        if order is not None and order.status is S.PROCESSING_SHIPMENT:
            # The label job has bought it and is storing it: the number appears shortly.
            raise LabelNotRecordedYet(f"order {named} has no tracking number recorded yet")
    named = webhook_batch.named_order(hint.metadata, "return:")
    if named is not None:
        order = await session.get(Order, named)
        if order is not None and order.status is S.RETURNING:
            # The return job has bought it and is storing it, as above.
            raise LabelNotRecordedYet(f"order {named} has no return tracking number yet")
    return None


async def _apply(session: AsyncSession, settings: Settings, order: Order, truth: Tracking) -> str:
    seen = {e.status for e in truth.events} | {truth.status}
    done = []
    if truth.status in (T.RETURNED, T.FAILURE):
        reason = f"the carrier reports the parcel {truth.status.value} ({truth.tracking_number})"
        if await state.flag_for_operator(session, order, reason):
            done.append("flagged: " + truth.status.value)
    if order.status in NOT_YET_SHIPPED and seen & {T.TRANSIT, T.DELIVERED}:
        reason = f"the carrier scanned the parcel of a {order.status.value} order"
        if await state.flag_for_operator(session, order, reason):
            done.append("flagged: scanned while " + order.status.value)
        return "; ".join(done) or "no move"

    target: OrderStatus | None = None
    if T.DELIVERED in seen:
        if _delivered_elsewhere(settings, truth):
            reason = f"delivered to ZIP {truth.destination_zip}, not the warehouse"
            if await state.flag_for_operator(session, order, reason):
                done.append("flagged: delivered elsewhere")
            target = S.SHIPPED
        else:
            target = S.RECEIVED
    elif T.TRANSIT in seen:
        target = S.SHIPPED
    path = FORWARD.get(order.status, ())
    if target is not None and target in path:
        for step in path[: path.index(target) + 1]:
            await transition(
                session,
                order.id,
                step,
                actor=ACTOR,
                notes=f"carrier: {truth.status.value}",
                metadata={"tracking_number": truth.tracking_number},
                expected_from={order.status},
            )
            done.append(f"moved to {step.value}")
    return "; ".join(done) or "no move"


async def _apply_return(session: AsyncSession, order: Order, truth: Tracking) -> str:
    """The parcel home delivered: returning → cancelled, the return marked delivered. Sent
    back to us or failed: flagged for a person."""
    seen = {e.status for e in truth.events} | {truth.status}
    done = []
    if truth.status in (T.RETURNED, T.FAILURE):
        reason = (
            f"the carrier reports the parcel home {truth.status.value} ({truth.tracking_number})"
        )
        if await state.flag_for_operator(session, order, reason):
            done.append("flagged: return " + truth.status.value)
    if T.DELIVERED in seen and order.status is S.RETURNING:
        home = await state.return_of(session, order.id)
        if home is not None:
            delivered_at = next(
                (e.occurred_at for e in truth.events if e.status is T.DELIVERED), None
            )
            await state.update_return(
                session,
                home,
                status=ReturnStatus.DELIVERED,
                delivered_at=delivered_at or dt.datetime.now(dt.UTC),
            )
        await transition(
            session,
            order.id,
            S.CANCELLED,
            actor=ACTOR,
            notes="carrier: DELIVERED (the device is back with the seller)",
            metadata={"tracking_number": truth.tracking_number, "leg": Leg.RETURN.value},
            expected_from={S.RETURNING},
        )
        done.append("moved to cancelled")
    return "; ".join(done) or "no move"


def _delivered_elsewhere(settings: Settings, truth: Tracking) -> bool:
    if not truth.destination_zip:
        return False
    return truth.destination_zip[:5] != settings.warehouse_zip[:5]


async def _transaction_updated(
    session: AsyncSession, data: dict[str, object]
) -> tuple[str, uuid.UUID | None]:
    """A label we wait on settled at the carrier: the label job (which reads the transaction
    again from the carrier, and buys nothing twice) completes it now instead of at its next
    poll."""
    try:
        transaction = parse_transaction(data)
    except (CarrierUnavailable, KeyError) as exc:
        return f"unreadable transaction: {exc}", None
    home_of = webhook_batch.named_order(transaction.metadata, "return:")
    if home_of is not None:
        return await _return_transaction_updated(session, home_of, transaction.status.pending)
    named = webhook_batch.named_order(transaction.metadata, "order:")
    order = await session.scalar(
        select(Order).where(
            or_(
                Order.label_transaction_id == transaction.transaction_id,
                Order.id == named if named else text("false"),
            )
        )
    )
    if order is None:
        return f"no order waits on transaction {transaction.transaction_id}", None
    waiting = (
        order.status is S.PROCESSING_SHIPMENT
        and not order.label_file_key
        and order.label_transaction_id in (None, transaction.transaction_id)
    )
    if not waiting or transaction.status.pending:
        return f"nothing to do: order is {order.status.value}", order.id
    job_id = await follow_ups.defer_now(session, follow_ups.PURCHASE_LABEL, order.id)
    return ("label job due now" if job_id else "label job running"), order.id


async def _return_transaction_updated(
    session: AsyncSession, order_id: uuid.UUID, pending: bool
) -> tuple[str, uuid.UUID | None]:
    """The same for the label home: its job, due now, reads the transaction and completes."""
    home = await session.scalar(select(ReturnShipment).where(ReturnShipment.order_id == order_id))
    if home is None or home.status not in (ReturnStatus.STARTED, ReturnStatus.PENDING):
        return f"no return of order {order_id} waits on a transaction", None
    if pending:
        return "nothing to do: the transaction is still pending", order_id
    job_id = await follow_ups.defer_now(session, follow_ups.PURCHASE_RETURN_LABEL, order_id)
    return ("return job due now" if job_id else "return job running"), order_id


def _finish(row: WebhookInbox, outcome: str, order_id: uuid.UUID | None) -> None:
    row.outcome = outcome[:2000]
    row.order_id = order_id
    row.processed_at = dt.datetime.now(dt.UTC)
    metrics.WEBHOOK_LAG.observe((row.processed_at - row.received_at).total_seconds())


STUCK = sweeps.Stuck(
    task=HANDLE_TASK,
    # A row given up on has its error set: it waits for an operator's replay.
    rows="webhook_inbox w WHERE w.processed_at IS NULL AND w.error IS NULL AND w.body IS NOT NULL",
    row_id="w.id",
    since="w.received_at",
    job_arg="inbox_id",
    requeue=webhook_inbox.requeue,
    flag=webhook_inbox.flag,
)


@queue.queue.periodic(cron="*/5 * * * *")
@queue.queue.task(name="shipping.sweep_webhooks", queueing_lock="shipping.sweep_webhooks")
async def sweep_webhooks_task(timestamp: int) -> int:
    return await sweep_webhooks()


async def sweep_webhooks(after_seconds: int = SWEEP_AFTER_SECONDS) -> int:
    """Kept events neither handled nor waiting on a job (their job failed out of attempts, say
    through a long carrier outage) get a new job: a delivered event is never dropped. One whose
    job keeps dying is kept with an error for an operator, past REFIT_SWEEP_MAX_ATTEMPTS; one
    whose handling failed REFIT_WEBHOOK_MAX_ATTEMPTS times already has it (webhook_inbox.py)."""
    return await sweeps.requeue_stuck(STUCK, after_seconds)
