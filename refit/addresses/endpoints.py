"""/api/shipping/addresses: the seller's saved addresses (CRUD). Asking a carrier about one
is shipping's (POST /api/shipping/validate-address in refit/shipping/endpoints.py)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from refit.addresses import service
from refit.addresses.schemas import AddressCreate, AddressPage, AddressRead, AddressUpdate
from refit.auth.deps import CurrentClaims, UserSessionDep

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
