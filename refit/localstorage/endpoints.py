"""`POST /api/migrate/localstorage`: a signed-in seller's browser uploads its own export, so
sellers move off browser storage without an operator (dual-write during the transition).

The same checks and importer as `refit import-localstorage`, in the request's one
transaction: a broken export is a 422 listing every problem with its place, an export of
another wallet a 403, and in both cases nothing is written. Uploading again is harmless:
what was imported is skipped (the browser may retry after a lost answer).

Imported orders are history (refit/orders/imported.py): the answer says what was dropped
(tracking numbers, payout signatures), which addresses were left out (over the cap) and which
orders the seller may continue (POST /api/orders/{id}/continue). An upload counts as one hit
of the seller's request limit (as every request), and, once its export checks out, of the
order limit and its own daily limit (`rate_limit_localstorage_imports_per_seller`).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select

from refit import inputs, ratelimit, resources, transactions
from refit.auth.deps import CurrentClaims, UserSessionDep
from refit.errors import ProblemError, Unprocessable, problem_responses
from refit.localstorage.importer import Part, import_batch
from refit.localstorage.schemas import ExportDocument
from refit.localstorage.validation import check_export
from refit.models.order import Order, OrderStatus
from refit.models.user import User
from refit.orders.imported import CONTINUABLE
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
    # Over the seller's cap of saved addresses: the browser's ids of those not imported.
    addresses_left_out: list[str]
    # Never taken from an export: how many of the new orders' were dropped.
    tracking_numbers_dropped: int
    payment_signatures_dropped: int
    # The seller's imported orders that were still open, to continue (newest first).
    continuable_order_ids: list[uuid.UUID]


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
    responses=problem_responses(401, 403, 413, 422, 429),
)
async def upload_localstorage(
    request: Request, session: UserSessionDep, claims: CurrentClaims
) -> UploadSummary:
    """Import the caller's own browser export: their saved addresses, and their orders as
    history (status `imported`) that nothing ships, inspects or pays."""
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
    # A checked export counts (a broken one writes nothing, and its seller fixes it and
    # tries again): one hit of the uploads' own daily limit and of the orders limit.
    res = resources.current()
    for limit, name in (
        (res.settings.rate_limit_localstorage_imports_per_seller, "localstorage.upload"),
        (res.settings.rate_limit_orders_per_seller, "orders.create"),
    ):
        await ratelimit.hit(res, limit, name, str(claims.user_id), fail_closed=False)
    # Under the seller's RLS: their own row is the only one there is.
    wallet = await session.scalar(select(User.wallet_address).where(User.id == claims.user_id))
    if wallet != checked.document.wallet_address:
        raise ProblemError(
            "This export belongs to another wallet than the one signed in; nothing was imported",
            status=403,
            code="wallet_mismatch",
        )
    async with transactions.as_service(session):
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
    # Under the seller's RLS again: their own orders only.
    continuable = await session.scalars(
        select(Order.id)
        .where(
            Order.status == OrderStatus.IMPORTED,
            Order.imported_status.in_(CONTINUABLE),
            Order.continued_as_id.is_(None),
        )
        .order_by(Order.created_at.desc(), Order.id.desc())
    )
    return UploadSummary(
        addresses_created=done.addresses_created,
        orders_created=done.orders_created,
        addresses_skipped=done.addresses_skipped,
        orders_skipped=done.orders_skipped,
        addresses_left_out=done.addresses_left_out,
        tracking_numbers_dropped=done.tracking_numbers_dropped,
        payment_signatures_dropped=done.payment_signatures_dropped,
        continuable_order_ids=list(continuable),
    )
