"""Operators' shipping endpoints under /api/admin (an operator's token, service role): the
label (retry, download, status, refund) and the sandbox's tracking. The moves themselves are
label_moves.py's (the dashboard calls them too); sending a device home is inspection's
(`inspection.service.send_home`), cancelling an order the back office's."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import select, text

from refit import idempotency, queue, resources
from refit.admin.deps import AdminDep, OperatorDep
from refit.carriers.interface import CarrierError
from refit.carriers.picker import PUSH_TASK, SandboxCarrier, open_carrier, push_lock
from refit.errors import PROBLEM_CONTENT, Conflict, Unprocessable
from refit.models.shipping import LabelPurchase, Leg
from refit.orders import follow_ups
from refit.orders.service import get_order
from refit.shipping import label_moves, state
from refit.shipping.label_download import label_response
from refit.shipping.schemas import OrderJobQueued, SandboxTrackingRequest
from refit.transactions import SessionDep

router = APIRouter(prefix="/api/admin/orders", tags=["admin"])

_ADMIN_ONLY: dict[int | str, dict[str, Any]] = {
    403: {"description": "An inspector: admins only; nothing changed", **PROBLEM_CONTENT}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such order", **PROBLEM_CONTENT}
}


@router.post(
    "/{order_id}/retry-label",
    status_code=202,
    response_model=OrderJobQueued,
    responses={
        **_ADMIN_ONLY,
        **_NOT_FOUND,
        409: {"description": "The order is not waiting for its label", **PROBLEM_CONTENT},
    },
)
async def retry_label(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Clear the label error and queue the label job again (it resumes any transaction the
    carrier already has for this order, so a retry never buys a second label). Accepts
    `Idempotency-Key`. Admins only."""
    claim = await idempotency.begin(
        session, operator.actor, idempotency_key, request, {"order_id": str(order_id)}
    )
    if claim.replay is not None:
        return claim.replay
    order, job_id = await label_moves.retry_label(session, order_id, operator)
    body = OrderJobQueued(order_id=order.id, status=order.status, job_id=job_id)
    response: Response = await idempotency.respond(session, claim, 202, body)
    return response


@router.get(
    "/{order_id}/label",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def operator_label(
    order_id: uuid.UUID, request: Request, session: SessionDep, operator: OperatorDep
) -> Response:
    return await label_response(resources.current(), await get_order(session, order_id))


@router.get("/{order_id}/label-status")
async def label_status(
    order_id: uuid.UUID, session: SessionDep, operator: OperatorDep
) -> dict[str, Any]:
    """Everything about the order's label: the order's fields, each purchase attempt with the
    carrier's messages, and the label jobs with their recorded errors."""
    order = await get_order(session, order_id)
    purchases = (
        await session.scalars(
            select(LabelPurchase)
            .where(LabelPurchase.order_id == order.id)
            .order_by(LabelPurchase.created_at)
        )
    ).all()
    jobs = (
        (
            await session.execute(
                text(
                    """
                SELECT j.id, j.status, j.attempts, j.scheduled_at,
                  coalesce(json_agg(json_build_object('attempt', e.attempt,
                    'error_type', e.error_type, 'message', e.message, 'at', e.created_at)
                    ORDER BY e.id) FILTER (WHERE e.id IS NOT NULL), '[]') AS errors
                FROM procrastinate_jobs j LEFT JOIN job_errors e ON e.job_id = j.id
                WHERE j.task_name = :task AND j.args ->> 'order_id' = :order_id
                GROUP BY j.id ORDER BY j.id
                """
                ),
                {"task": follow_ups.PURCHASE_LABEL.task, "order_id": str(order.id)},
            )
        )
        .mappings()
        .all()
    )
    return {
        "order_id": str(order.id),
        "status": order.status,
        "label_error": order.label_error,
        "shipping_rate_id": order.shipping_rate_id,
        "label_transaction_id": order.label_transaction_id,
        "tracking_number": order.tracking_number,
        "label_purchased_at": order.label_purchased_at,
        "purchases": [
            {
                "id": str(p.id),
                "attempt": p.attempt,
                "job_id": p.job_id,
                "carrier_name": p.carrier_name,
                "rate_id": p.rate_id,
                "transaction_id": p.transaction_id,
                "status": p.status,
                "messages": p.messages,
                "refund_status": p.refund_status,
                "created_at": p.created_at,
            }
            for p in purchases
        ],
        "jobs": [dict(j) for j in jobs],
    }


@router.post("/{order_id}/sandbox-tracking", status_code=204)
async def push_sandbox_tracking(
    order_id: uuid.UUID,
    body: SandboxTrackingRequest,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
) -> Response:
    """Sandbox carrier only: move a parcel's tracking on (pre-transit, transit, delivered):
    the inbound one, or with `leg: return` the device's way home."""
    order = await get_order(session, order_id)
    number = order.tracking_number
    if body.leg is Leg.RETURN:
        home = await state.return_of(session, order.id)
        number = home.tracking_number if home is not None else None
    if not number:
        raise Conflict("This parcel has no tracking number yet", code="label_not_ready")
    async with open_carrier(resources.current().settings) as carrier:
        if not isinstance(carrier, SandboxCarrier):
            raise Conflict(
                "Tracking is the carrier's to move outside the sandbox", code="not_sandbox"
            )
        try:
            await carrier.advance_tracking(number, body.status)
        except CarrierError as exc:
            raise Unprocessable(exc.detail, code="sandbox_tracking_refused") from exc
    # The sandbox tells us as Shippo would: a webhook, delivered by a job.
    await queue.defer(
        session,
        PUSH_TASK,
        queueing_lock=push_lock(number),
        tracking_number=number,
    )
    return Response(status_code=204)


@router.post(
    "/{order_id}/refund-label",
    status_code=202,
    response_model=OrderJobQueued,
    responses={
        **_ADMIN_ONLY,
        **_NOT_FOUND,
        409: {"description": "Only a cancelled order's label is refunded", **PROBLEM_CONTENT},
    },
)
async def refund_label(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Queue the refund of a cancelled order's unused label again (the job refunds what is
    refundable and settles any purchase still in flight; a label already refunded is left
    alone). Accepts `Idempotency-Key`. Admins only."""
    claim = await idempotency.begin(
        session, operator.actor, idempotency_key, request, {"order_id": str(order_id)}
    )
    if claim.replay is not None:
        return claim.replay
    order, job_id = await label_moves.refund_label(session, order_id, operator)
    body = OrderJobQueued(order_id=order.id, status=order.status, job_id=job_id)
    response: Response = await idempotency.respond(session, claim, 202, body)
    return response
