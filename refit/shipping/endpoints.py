"""Sellers' shipping endpoints: rates, purchase-label, the label download."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from refit import idempotency
from refit.auth.deps import CurrentClaims, UserSessionDep
from refit.errors import NotFound
from refit.models import Order
from refit.orders.reads import order_detail
from refit.orders.service import get_order
from refit.ratelimit import enforce
from refit.resources import Resources
from refit.shipping import purchases, rates
from refit.shipping.carrier import CarrierError
from refit.shipping.carriers import CARRIER_CALLS_PER_USER, as_problem, open_carrier
from refit.shipping.schemas import (
    LabelPurchaseAccepted,
    PurchaseLabelRequest,
    RateRead,
    RatesRequest,
    RatesResponse,
)
from refit.shipping.storage import LabelNotFound, content_type_for, label_storage

router = APIRouter(prefix="/api/shipping", tags=["shipping"])


@router.post("/rates", response_model=RatesResponse)
async def get_rates(
    body: RatesRequest, request: Request, session: UserSessionDep, claims: CurrentClaims
) -> RatesResponse:
    """Rates from the order's address to the warehouse, for the device's parcel."""
    res: Resources = request.app.state.resources
    await enforce(request, CARRIER_CALLS_PER_USER, "shipping.carrier", str(claims.user_id))
    async with open_carrier(res.settings) as carrier:
        try:
            quotes = await rates.quote_rates(session, res, carrier, body.order_id)
        except CarrierError as exc:
            raise as_problem(exc) from exc
    return RatesResponse(
        rates=[
            RateRead(
                rate_id=q.rate_id,
                carrier=q.carrier,
                service=q.service,
                amount=q.amount,
                currency=q.currency,
                estimated_days=q.estimated_days,
            )
            for q in quotes
        ]
    )


@router.post("/purchase-label", status_code=202, response_model=LabelPurchaseAccepted)
async def purchase_label(
    body: PurchaseLabelRequest,
    request: Request,
    session: UserSessionDep,
    claims: CurrentClaims,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Buy one of the quoted rates: 202 with the order in processing_shipment; a background
    job buys the label. Accepts `Idempotency-Key`."""
    claim = await idempotency.begin(
        session, claims.user_id, idempotency_key, request, body.model_dump(mode="json")
    )
    if claim.replay is not None:
        return claim.replay
    res: Resources = request.app.state.resources
    async with open_carrier(res.settings) as carrier:
        try:
            order = await purchases.request_label(
                session, res, carrier, body.order_id, body.rate_id, user_id=claims.user_id
            )
        except CarrierError as exc:
            raise as_problem(exc) from exc
    response: JSONResponse = await idempotency.respond(
        session, claim, 202, LabelPurchaseAccepted(order=await order_detail(session, order))
    )
    return response


async def label_response(res: Resources, order: Order) -> Response:
    if not order.label_file_key:
        raise NotFound("This order has no label yet", code="label_not_ready")
    try:
        data = await label_storage(res.settings).get(order.label_file_key)
    except LabelNotFound as exc:
        raise NotFound("The label file is missing", code="label_not_found") from exc
    extension = order.label_file_key.rsplit(".", 1)[-1]
    return Response(
        content=data,
        media_type=content_type_for(order.label_file_key),
        headers={
            "Content-Disposition": f'attachment; filename="{order.order_number}-label.{extension}"',
            # A label is a bearer document (anyone holding it can ship on our account).
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get(
    "/labels/{order_id}",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def download_label(
    order_id: uuid.UUID, request: Request, session: UserSessionDep
) -> Response:
    """The order's label file, for its owner only (another seller's order is a 404)."""
    order = await get_order(session, order_id)
    return await label_response(request.app.state.resources, order)
