"""/api/shipping/addresses (CRUD) and /api/shipping/validate-address."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from refit.addresses import service
from refit.addresses.schemas import (
    AddressCreate,
    AddressPage,
    AddressRead,
    AddressUpdate,
    ValidateAddressRequest,
    ValidateAddressResponse,
)
from refit.auth.deps import CurrentClaims, UserSessionDep
from refit.ratelimit import enforce
from refit.shipping.carrier import CarrierError
from refit.shipping.carriers import CARRIER_CALLS_PER_USER, as_problem, open_carrier

router = APIRouter(prefix="/api/shipping", tags=["shipping"])


@router.get("/addresses", response_model=AddressPage)
async def list_addresses(
    session: UserSessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: str | None = None,
) -> AddressPage:
    rows, next_cursor = await service.list_addresses(session, limit=limit, cursor=cursor)
    return AddressPage(items=[AddressRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("/addresses", response_model=AddressRead, status_code=201)
async def create_address(
    body: AddressCreate, session: UserSessionDep, claims: CurrentClaims
) -> AddressRead:
    address = await service.create_address(session, claims.user_id, body)
    return AddressRead.model_validate(address)


@router.get("/addresses/{address_id}", response_model=AddressRead)
async def get_address(address_id: uuid.UUID, session: UserSessionDep) -> AddressRead:
    return AddressRead.model_validate(await service.get_address(session, address_id))


@router.patch("/addresses/{address_id}", response_model=AddressRead)
async def update_address(
    address_id: uuid.UUID, body: AddressUpdate, session: UserSessionDep, claims: CurrentClaims
) -> AddressRead:
    address = await service.update_address(session, claims.user_id, address_id, body)
    return AddressRead.model_validate(address)


@router.delete("/addresses/{address_id}", status_code=204)
async def delete_address(address_id: uuid.UUID, session: UserSessionDep) -> Response:
    await service.delete_address(session, address_id)
    return Response(status_code=204)


@router.post("/validate-address", response_model=ValidateAddressResponse)
async def validate_address(
    body: ValidateAddressRequest, request: Request, session: UserSessionDep, claims: CurrentClaims
) -> ValidateAddressResponse:
    """Ask the carrier. An invalid address is a 200 with is_valid false: reporting is the job.
    A saved address keeps the verdict (is_validated, validation_data)."""
    settings = request.app.state.resources.settings
    await enforce(request, CARRIER_CALLS_PER_USER, "shipping.carrier", str(claims.user_id))
    saved = None
    if body.address_id is not None:
        saved = await service.get_address(session, body.address_id, for_update=True)
        target = service.to_carrier_address(saved)
    else:
        target = service.to_carrier_address(body.inline())
    async with open_carrier(settings) as carrier:
        try:
            result = await carrier.validate_address(target)
        except CarrierError as exc:
            raise as_problem(exc) from exc
        if saved is not None:
            await service.record_validation(session, saved, result, carrier=carrier.name)
    return ValidateAddressResponse(
        is_valid=result.is_valid,
        messages=[m.as_dict() for m in result.messages],  # type: ignore[misc]
        recommended_address=service.recommended(result),  # type: ignore[arg-type]
    )
