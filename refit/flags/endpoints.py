"""GET /api/flags (a signed-in seller's flags) and /api/admin/flags (admins manage them)."""

from __future__ import annotations

import uuid
from collections import OrderedDict

from fastapi import APIRouter, Path, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Scope

from refit import fastlane, transactions
from refit.admin.deps import AdminDep
from refit.auth.deps import CurrentClaims, UserSessionDep, lane_claims
from refit.errors import Unauthorized, problem_responses
from refit.flags import evaluate, service
from refit.flags.schemas import (
    NAME_PATTERN,
    FlagChange,
    FlagRead,
    FlagReadWithAudit,
    SellerFlags,
)
from refit.models import User
from refit.transactions import SessionDep

router = APIRouter(prefix="/api/flags", tags=["flags"])
admin_router = APIRouter(prefix="/api/admin/flags", tags=["admin"])

_ADMIN_PROBLEMS = problem_responses(401, 403, 422)
FlagName = Path(pattern=NAME_PATTERN, examples=["new-checkout"])

# A seller's wallet address never changes (the account is the wallet), so it is kept per
# process after the first read: a client polling its flags costs no database round trip.
_WALLETS_KEPT = 50_000
_wallets: OrderedDict[uuid.UUID, str] = OrderedDict()


async def _wallet_of(session: AsyncSession, user_id: uuid.UUID) -> str:
    wallet = _wallets.get(user_id)
    if wallet is None:
        wallet = await session.scalar(select(User.wallet_address).where(User.id == user_id))
        if wallet is None:
            raise Unauthorized("This account no longer exists", code="user_not_found")
        _wallets[user_id] = wallet
        if len(_wallets) > _WALLETS_KEPT:
            _wallets.popitem(last=False)
    return wallet


@router.get("", response_model=SellerFlags, responses=problem_responses(401))
async def my_flags(session: UserSessionDep, claims: CurrentClaims) -> SellerFlags:
    """Every flag, on or off for the signed-in seller's wallet, evaluated on the server; and
    the seller's variant of each flag that is on for them and has variants (counted as an
    exposure of that variant)."""
    return await _flags_of(session, claims.user_id)


async def lane_my_flags(scope: Scope, _: str) -> Response:
    """The same GET for the fast lane (refit.fastlane): the same transaction, in the seller's
    role, committed before the answer goes out; the body as FastAPI writes the model."""
    claims = await lane_claims(scope)
    async with transactions.seller_transaction(claims.user_id) as session:
        flags = await _flags_of(session, claims.user_id)
    return fastlane.json_response(flags.model_dump_json(by_alias=True))


async def _flags_of(session: AsyncSession, user_id: uuid.UUID) -> SellerFlags:
    wallet = await _wallet_of(session, user_id)
    enabled, variants = await evaluate.flags_for(session, wallet)
    return SellerFlags(flags=enabled, variants=variants)


@admin_router.get("", response_model=list[FlagRead], responses=_ADMIN_PROBLEMS)
async def list_flags(session: SessionDep, admin: AdminDep) -> list[FlagRead]:
    """Every flag with its exposures per variant (summed over processes, seconds behind)."""
    return await service.list_flags(session)


@admin_router.get(
    "/{name}", response_model=FlagReadWithAudit, responses=problem_responses(401, 403, 404, 422)
)
async def get_flag(session: SessionDep, admin: AdminDep, name: str = FlagName) -> FlagReadWithAudit:
    """One flag, its exposures and every change made to it (oldest first)."""
    flag = await service.get_flag(session, name)
    read = FlagRead.model_validate(flag).model_dump()
    read["exposures"] = await service.exposures_of(session, flag)
    return FlagReadWithAudit(**read, audit=await service.flag_audit(session, flag))


@admin_router.put("/{name}", response_model=FlagRead, responses=_ADMIN_PROBLEMS)
async def put_flag(
    body: FlagChange, session: SessionDep, admin: AdminDep, name: str = FlagName
) -> FlagRead:
    """Create or change a flag: `mode` off, on, wallets (on for `wallets`) or percent (on for
    `percent` % of wallets); fields left out keep their values. Audited; every API process
    has it within a second or so. The same body twice changes (and audits) nothing."""
    flag = await service.set_flag(session, name, body, admin.actor)
    return FlagRead.model_validate(flag).model_copy(
        update={"exposures": await service.exposures_of(session, flag)}
    )
