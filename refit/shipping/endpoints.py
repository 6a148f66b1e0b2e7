"""Sellers' shipping endpoints: rates, address validation, purchase-label, the label download;
and the order's tracking (GET /api/orders/{id}/tracking).

The three that may call the carrier hold no transaction while it answers: a short seller
transaction reads what they need, the carrier is called with no connection taken, and a
second short transaction re-checks what was decided on and writes. A slow or rate-limited
carrier then costs a waiting coroutine, not a pooled connection or a row lock.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from refit import idempotency, resources
from refit.addresses.schemas import ValidateAddressRequest, ValidateAddressResponse
from refit.addresses.service import get_address
from refit.auth.deps import CurrentClaims, UserSessionDep, seller_limit
from refit.carriers.interface import CarrierError
from refit.carriers.picker import (
    CARRIER_CALLS_PER_USER,
    as_problem,
    carrier_name,
    open_carrier,
)
from refit.errors import Conflict
from refit.orders.reads import order_detail
from refit.orders.service import get_order
from refit.ratelimit import enforce
from refit.shipping import addresses, purchases, rates
from refit.shipping.addresses import AddressSnapshot, Verdict
from refit.shipping.label_download import label_response
from refit.shipping.schemas import (
    LabelPurchaseAccepted,
    PurchaseLabelRequest,
    RateRead,
    RatesRequest,
    RatesResponse,
    TrackingRead,
)
from refit.shipping.tracking import tracking
from refit.transactions import seller_transaction

router = APIRouter(prefix="/api/shipping", tags=["shipping"])
# The parcels' tracking lives under the order it belongs to.
tracking_router = APIRouter(prefix="/api/orders", tags=["orders"])


@router.post("/rates", response_model=RatesResponse)
async def get_rates(body: RatesRequest, request: Request, claims: CurrentClaims) -> RatesResponse:
    """Rates from the order's address to the warehouse, for the device's parcel."""
    settings = resources.current().settings
    await enforce(request, CARRIER_CALLS_PER_USER, "shipping.carrier", str(claims.user_id))
    async with seller_transaction(claims.user_id) as session:
        plan = await rates.plan(session, body.order_id)
    async with open_carrier(settings, seller_waiting=True) as carrier:
        try:
            rated = await rates.fetch(carrier, plan)
        except CarrierError as exc:
            raise as_problem(exc) from exc
    async with seller_transaction(claims.user_id) as session:
        quotes = await rates.record(session, plan, rated)
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


@router.post(
    "/validate-address",
    response_model=ValidateAddressResponse,
    dependencies=[
        seller_limit("rate_limit_address_validations_per_seller", "shipping.validate_address")
    ],
)
async def validate_address(
    body: ValidateAddressRequest, request: Request, claims: CurrentClaims
) -> ValidateAddressResponse:
    """Ask the carrier. An invalid address is a 200 with is_valid false: reporting is the job.
    A saved address keeps the verdict (is_validated, validation_data)."""
    settings = resources.current().settings
    await enforce(request, CARRIER_CALLS_PER_USER, "shipping.carrier", str(claims.user_id))
    if body.address_id is None:
        target = AddressSnapshot.of(body.inline())
    else:
        async with seller_transaction(claims.user_id) as session:
            target = AddressSnapshot.of(await get_address(session, body.address_id))
    async with open_carrier(settings, seller_waiting=True) as carrier:
        try:
            verdict = await addresses.check(carrier, target, fresh=True)
        except CarrierError as exc:
            raise as_problem(exc) from exc
    if body.address_id is not None:
        async with seller_transaction(claims.user_id) as session:
            # Kept only if the address is still the place the carrier was asked about.
            addresses.record_validation(
                await get_address(session, body.address_id, for_update=True), verdict
            )
    return ValidateAddressResponse.model_validate(verdict)


@router.post(
    "/purchase-label",
    status_code=202,
    response_model=LabelPurchaseAccepted,
    dependencies=[seller_limit("rate_limit_label_purchases_per_seller", "shipping.purchase_label")],
)
async def purchase_label(
    body: PurchaseLabelRequest,
    request: Request,
    claims: CurrentClaims,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Buy one of the quoted rates: 202 with the order in processing_shipment; a background
    job buys the label. Accepts `Idempotency-Key`."""
    settings = resources.current().settings

    async def decide(verdict: Verdict | None) -> Response:
        # The idempotency claim, the decision and the stored response: one transaction.
        async with seller_transaction(claims.user_id) as session:
            claim = await idempotency.begin(
                session, claims.user_id, idempotency_key, request, body.model_dump(mode="json")
            )
            if claim.replay is not None:
                return claim.replay
            order = await purchases.request_label(
                session,
                body.order_id,
                body.rate_id,
                user_id=claims.user_id,
                carrier_name=carrier_name(settings),
                verdict=verdict,
            )
            accepted = LabelPurchaseAccepted(order=await order_detail(session, order))
            return await idempotency.respond(session, claim, 202, accepted)

    try:
        return await decide(None)
    except purchases.VerdictNeeded as needed:
        # That transaction rolled back and let go of the order: ask with nothing held.
        target = needed.address
    async with open_carrier(settings, seller_waiting=True) as carrier:
        try:
            verdict = await addresses.check(carrier, target)
        except CarrierError as exc:
            raise as_problem(exc) from exc
    try:
        return await decide(verdict)
    except purchases.VerdictNeeded as again:
        # The address changed while the carrier was asked: the verdict is about another place.
        raise Conflict(
            "The shipping address changed while it was being checked; try again",
            code="address_changed",
        ) from again


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
    return await label_response(resources.current(), order)


@tracking_router.get("/{order_id}/tracking", response_model=TrackingRead)
async def get_tracking(order_id: uuid.UUID, session: UserSessionDep) -> TrackingRead:
    """The carrier, tracking number, latest status, ETA and every event, oldest first."""
    return await tracking(session, await get_order(session, order_id))
