"""Operators' shipping endpoints under /api/admin (HTTP Basic, service role)."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from sqlalchemy import select, text

from refit import idempotency, resources
from refit.admin.deps import OperatorDep
from refit.errors import Conflict, Unprocessable
from refit.models import OrderStatus
from refit.orders import follow_ups
from refit.orders.service import get_order
from refit.resources import SessionDep
from refit.shipping import state
from refit.shipping.carrier import CarrierError
from refit.shipping.carriers import open_carrier
from refit.shipping.endpoints import label_response
from refit.shipping.models import LabelPurchase
from refit.shipping.sandbox import SandboxCarrier
from refit.shipping.schemas import RetryLabelResponse, SandboxTrackingRequest

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/admin/orders", tags=["admin"])


@router.post("/{order_id}/retry-label", status_code=202, response_model=RetryLabelResponse)
async def retry_label(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Clear the label error and queue the label job again (it resumes any transaction the
    carrier already has for this order, so a retry never buys a second label). Accepts
    `Idempotency-Key`."""
    claim = await idempotency.begin(
        session, f"operator:{operator}", idempotency_key, request, {"order_id": str(order_id)}
    )
    if claim.replay is not None:
        return claim.replay
    order = await get_order(session, order_id, for_update=True)
    if order.status != OrderStatus.PROCESSING_SHIPMENT:
        raise Conflict(
            f"Order {order.order_number} is {order.status}; only an order waiting for its "
            "label (processing_shipment) can have its label retried",
            code="invalid_order_state",
        )
    await state.set_label_error(session, order, None)
    job_id = await follow_ups.defer(session, follow_ups.PURCHASE_LABEL, order.id)
    log.info("shipping.label_retry", order_id=str(order.id), operator=operator, job_id=job_id)
    body = RetryLabelResponse(order_id=order.id, status=order.status, job_id=job_id)
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
    """Sandbox carrier only: move the parcel's tracking on (pre-transit, transit, delivered)."""
    order = await get_order(session, order_id)
    if not order.tracking_number:
        raise Conflict("This order has no tracking number yet", code="label_not_ready")
    async with open_carrier(resources.current().settings) as carrier:
        if not isinstance(carrier, SandboxCarrier):
            raise Conflict(
                "Tracking is the carrier's to move outside the sandbox", code="not_sandbox"
            )
        try:
            await carrier.advance_tracking(order.tracking_number, body.status)
        except CarrierError as exc:
            raise Unprocessable(exc.detail, code="sandbox_tracking_refused") from exc
    return Response(status_code=204)
