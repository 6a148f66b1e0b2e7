"""The operators' inspection API (docs/api.md "Operators"): receive, start the inspection, the
verdict, photo evidence, sending a device home; and the signed photo URL. The order list and
story are the back office's (refit/backoffice/).

Operators run as the service role; every move is written to the order's history as
`operator:<id>`. Writes accept an `Idempotency-Key` (the first response is replayed).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, File, Query, Request, Response, UploadFile

from refit import idempotency, resources
from refit.admin.deps import OperatorDep
from refit.errors import PROBLEM_CONTENT, NotFound, ProblemError, problem_responses
from refit.inspection import evidence, service
from refit.inspection.schemas import (
    EvidenceUploaded,
    InspectionCreate,
    InspectionRead,
    VerdictRead,
)
from refit.models.inspection import EvidencePhoto
from refit.orders.schemas import AdminOrderRead
from refit.shipping.schemas import OrderJobQueued
from refit.signed_urls import EVIDENCE_PHOTO_PATH, verify_url
from refit.storage import LabelNotFound, label_storage
from refit.transactions import SessionDep, service_transaction

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/admin/orders", tags=["admin"])
photos_router = APIRouter(prefix="/api/evidence", tags=["orders"])


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """401: no or a bad operator token; 403: an inspector where an admin is needed."""
    return problem_responses(401, *statuses)


@router.post(
    "/{order_id}/receive", response_model=AdminOrderRead, responses=_problems(400, 404, 409)
)
async def receive(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """The parcel is at the warehouse → received, also without a carrier scan (from
    awaiting_shipment it passes through shipped; both moves are recorded)."""
    claim = await idempotency.begin(
        session, operator.actor, idempotency_key, request, {"order_id": str(order_id)}
    )
    if claim.replay is not None:
        return claim.replay
    order = await service.receive(session, order_id, operator)
    return await idempotency.respond(session, claim, 200, AdminOrderRead.model_validate(order))


@router.post(
    "/{order_id}/inspection/start",
    response_model=AdminOrderRead,
    responses=_problems(400, 404, 409),
)
async def start_inspection(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """received → inspecting."""
    claim = await idempotency.begin(
        session, operator.actor, idempotency_key, request, {"order_id": str(order_id)}
    )
    if claim.replay is not None:
        return claim.replay
    order = await service.start_inspection(session, order_id, operator)
    return await idempotency.respond(session, claim, 200, AdminOrderRead.model_validate(order))


@router.post(
    "/{order_id}/inspect",
    response_model=VerdictRead,
    responses=_problems(400, 403, 404, 409, 422),
)
async def inspect(
    order_id: uuid.UUID,
    data: InspectionCreate,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """The verdict on an order in inspecting, priced from the catalog for the grade and storage
    found: `as_quoted` (at or above the quote: the quoted price stands, on to payout),
    `revised_offer` (below: offer_pending, the seller answers) or `unbuyable` (activation lock
    on, or dead and not graded `broken`: returning). The IMEI (15 digits, Luhn) or the serial
    is required. `override_price_usd` with `override_reason`: admins only (403 otherwise)."""
    claim = await idempotency.begin(
        session, operator.actor, idempotency_key, request, data.model_dump(mode="json")
    )
    if claim.replay is not None:
        return claim.replay
    order, inspection = await service.inspect(session, order_id, operator, data)
    body = VerdictRead(
        order_id=order.id,
        status=order.status,
        outcome=inspection.outcome,
        quoted_price_usd=order.quoted_price_usd,
        final_price_usd=inspection.final_price_usd,
        inspection=InspectionRead.model_validate(inspection),
    )
    return await idempotency.respond(session, claim, 200, body)


@router.post(
    "/{order_id}/evidence",
    status_code=201,
    response_model=EvidenceUploaded,
    responses=_problems(400, 404, 409, 413, 422),
)
async def upload_evidence(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    photos: Annotated[list[UploadFile], File(description="JPEG, PNG or WebP photos")],
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Photos of the device (multipart, field `photos`, one or more): JPEG, PNG or WebP by
    their bytes (422 `unsupported_image` otherwise), REFIT_EVIDENCE_MAX_BYTES in all (413).
    Stored re-encoded without metadata (GPS and all EXIF removed); the order's owner sees them
    with the inspection. The same photo twice is kept once."""
    settings = resources.current().settings
    if not photos or len(photos) > evidence.MAX_PHOTOS_PER_UPLOAD:
        raise ProblemError(
            f"Send 1 to {evidence.MAX_PHOTOS_PER_UPLOAD} photos per request",
            status=422,
            code="invalid_photo_count",
        )
    files, total = [], 0
    for upload in photos:
        data = await upload.read()
        total += len(data)
        if total > settings.evidence_max_bytes:
            raise evidence.too_large(settings)
        files.append((upload.filename, data))
    cleaned = await evidence.clean_and_store_for(session, settings, order_id, files)
    fingerprint = [
        {"filename": name, "sha256": hashlib.sha256(data).hexdigest()} for name, data in files
    ]
    claim = await idempotency.begin(
        session, operator.actor, idempotency_key, request, {"photos": fingerprint}
    )
    if claim.replay is not None:
        return claim.replay
    rows = await evidence.record(session, order_id, operator.id, cleaned)
    body = EvidenceUploaded(
        order_id=order_id, photos=[evidence.evidence_read(settings, row) for row in rows]
    )
    return await idempotency.respond(session, claim, 201, body)


@router.post(
    "/{order_id}/return-label",
    status_code=202,
    response_model=OrderJobQueued,
    responses={
        404: {"description": "No such order", **PROBLEM_CONTENT},
        409: {
            "description": "Not an order that can go home (inspecting, offer_pending, or "
            "returning without its label home), the seller already accepted the offer, or "
            "the order is being paid",
            **PROBLEM_CONTENT,
        },
    },
)
async def return_label(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    idempotency_key: idempotency.IdempotencyKeyHeader = None,
) -> Response:
    """Send the device home with an insured label (a job buys it). An order in inspecting
    (unbuyable) or offer_pending (the seller declined, by phone say) moves to returning; an
    order already returning whose label home failed gets the job again (it resumes any
    purchase the carrier already has, so never two labels). Accepts `Idempotency-Key`."""
    claim = await idempotency.begin(
        session, operator.actor, idempotency_key, request, {"order_id": str(order_id)}
    )
    if claim.replay is not None:
        return claim.replay
    order, job_id = await service.send_home(session, order_id, operator)
    body = OrderJobQueued(order_id=order.id, status=order.status, job_id=job_id)
    return await idempotency.respond(session, claim, 202, body)


@photos_router.get(
    "/{photo_id}",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
        **_problems(403, 404),
    },
)
async def evidence_photo(
    photo_id: uuid.UUID,
    expires: Annotated[int | None, Query()] = None,
    sig: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """One evidence photo, by the signed URL an order's owner or an operator was given (no
    token: the signature is the permission). 403 for an expired, tampered or missing
    signature; the URL of one photo never opens another."""
    settings = resources.current().settings
    if expires is None or sig is None:
        raise ProblemError("This link is not valid", status=403, code="invalid_signature")
    left = verify_url(settings, EVIDENCE_PHOTO_PATH.format(photo_id=photo_id), expires, sig)
    # A short read of its own: the storage call below holds no pooled connection.
    async with service_transaction() as session:
        photo = await session.get(EvidencePhoto, photo_id)
    if photo is None:
        raise NotFound(f"No photo {photo_id}", code="photo_not_found")
    try:
        data = await label_storage(settings).get(photo.storage_key)
    except LabelNotFound as exc:
        raise NotFound(f"No photo {photo_id}", code="photo_not_found") from exc
    return Response(
        content=data,
        media_type=photo.content_type,
        headers={
            "Cache-Control": f"private, max-age={min(left, settings.evidence_url_ttl_seconds)}",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
