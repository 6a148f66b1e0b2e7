"""`POST /api/migrate/localstorage`: a signed-in seller's browser uploads its own export, so
sellers move off browser storage without an operator (dual-write during the transition).

The same checks and importer as `refit import-localstorage`, in the request's one
transaction: a broken export is a 422 listing every problem with its place, an export of
another wallet a 403, and in both cases nothing is written. Uploading again is harmless:
what was imported is skipped (the browser may retry after a lost answer).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import db, inputs
from refit.auth.deps import CurrentClaims, UserSessionDep
from refit.errors import ProblemError, Unprocessable, problem_responses
from refit.localstorage.importer import Part, import_batch
from refit.localstorage.schemas import ExportDocument
from refit.localstorage.validation import check_export
from refit.models.order import Order
from refit.models.user import User
from refit.settings import Settings

UPLOAD_PATH = "/api/migrate/localstorage"
UPLOAD_SOURCE = "upload"

router = APIRouter(prefix="/api/migrate", tags=["migrate"])


def body_limits(settings: Settings) -> dict[str, int]:
    """The upload's own body limit (errors.BodyLimit's `larger`)."""
    return {UPLOAD_PATH: settings.localstorage_upload_max_bytes}


class UploadSummary(BaseModel):
    addresses_created: int
    orders_created: int
    addresses_skipped: int
    orders_skipped: int


_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The browser's export (docs/localstorage-export.md)",
        "content": {"application/json": {"schema": ExportDocument.model_json_schema()}},
    }
}


@router.post(
    "/localstorage",
    response_model=UploadSummary,
    openapi_extra=_REQUEST_BODY,
    responses=problem_responses(401, 403, 413, 422),
)
async def upload_localstorage(
    request: Request, session: UserSessionDep, claims: CurrentClaims
) -> UploadSummary:
    """Import the caller's own browser export: their saved addresses and orders."""
    # Read raw: our own checks report every problem by its place in the export, which
    # FastAPI's body parsing would not. BodyLimit has already cut the body at the limit; the
    # input guard has refused text PostgreSQL cannot store and JSON nested too deep.
    checked = check_export(await inputs.body_to_parse_as_json(request), source=UPLOAD_SOURCE)
    if checked.document is None:
        raise Unprocessable(
            f"The export has {len(checked.problems)} problem(s); nothing was imported",
            code="invalid_export",
            extra={
                "problems": [{"place": p.place, "message": p.message} for p in checked.problems]
            },
        )
    # Under the seller's RLS: their own row is the only one there is.
    wallet = await session.scalar(select(User.wallet_address).where(User.id == claims.user_id))
    if wallet != checked.document.wallet_address:
        raise ProblemError(
            "This export belongs to another wallet than the one signed in; nothing was imported",
            status=403,
            code="wallet_mismatch",
        )
    async with db.as_service(session):
        await _refuse_tracking_numbers_of_others(session, checked.document, claims.user_id)
        done = await import_batch(
            session,
            [
                Part(
                    checked.document,
                    UPLOAD_SOURCE,
                    checked.document.addresses,
                    checked.document.orders,
                )
            ],
            actor=f"user:{claims.user_id}",
        )
    return UploadSummary(
        addresses_created=done.addresses_created,
        orders_created=done.orders_created,
        addresses_skipped=done.addresses_skipped,
        orders_skipped=done.orders_skipped,
    )


async def _refuse_tracking_numbers_of_others(
    session: AsyncSession, document: ExportDocument, user_id: uuid.UUID
) -> None:
    """A seller's browser says which tracking numbers its parcels have, unverified: one that
    is another seller's order's would let the carrier's updates for that parcel reach the
    wrong order. Checked as the service (RLS would hide the other order) in this transaction;
    the seller's own numbers pass, so uploading again stays harmless."""
    wanted = {
        order.label.tracking_number: i
        for i, order in enumerate(document.orders)
        if order.label is not None and order.label.tracking_number
    }
    if not wanted:
        return
    taken = (
        await session.scalars(
            select(Order.tracking_number).where(
                Order.tracking_number.in_(wanted), Order.user_id != user_id
            )
        )
    ).all()
    if taken:
        raise Unprocessable(
            "The export names tracking numbers of other orders; nothing was imported",
            code="invalid_export",
            extra={
                "problems": [
                    {
                        "place": f"orders[{wanted[number]}].label.tracking_number",
                        "message": "this tracking number belongs to another order",
                    }
                    for number in sorted({n for n in taken if n is not None})
                ]
            },
        )
