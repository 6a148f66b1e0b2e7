"""Evidence photos from the dashboard (the tablet's camera): the same checks, cleaning and
rows as POST /api/admin/orders/{id}/evidence."""

from __future__ import annotations

import uuid

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from refit import resources
from refit.admin.deps import OperatorPrincipal
from refit.errors import ProblemError
from refit.inspection import evidence
from refit.inspection.evidence import EVIDENCE_STATUSES, EVIDENCE_UPLOAD_PATH
from refit.settings import Settings

__all__ = ["EVIDENCE_STATUSES", "add", "body_limits"]

# The dashboard's forms that carry photos.
UPLOAD_PATHS = (r"/admin/orders/[^/]+/photos", r"/admin/orders/[^/]+/inspect")


def body_limits(settings: Settings) -> dict[str, int]:
    """Allowed bodies above REFIT_MAX_BODY_BYTES: the same as the API's photo upload."""
    limit = evidence.body_limits(settings)[EVIDENCE_UPLOAD_PATH]
    return dict.fromkeys(UPLOAD_PATHS, limit)


async def read_uploads(request: Request) -> list[tuple[str | None, bytes]]:
    """The files of the form's `photos` field. An empty file input arrives as a nameless empty
    part, which the parser may even hand over as text: neither is a photo."""
    settings = resources.current().settings
    uploads = [u for u in (await request.form()).getlist("photos") if isinstance(u, UploadFile)]
    files, total = [], 0
    for upload in uploads:
        data = await upload.read()
        if not data and not upload.filename:
            continue
        total += len(data)
        if total > settings.evidence_max_bytes:
            raise evidence.too_large(settings)
        files.append((upload.filename, data))
    if len(files) > evidence.MAX_PHOTOS_PER_UPLOAD:
        raise ProblemError(
            f"Send at most {evidence.MAX_PHOTOS_PER_UPLOAD} photos at once",
            status=422,
            code="invalid_photo_count",
        )
    return files


async def add(
    session: AsyncSession,
    order_id: uuid.UUID,
    operator: OperatorPrincipal,
    request: Request,
) -> int:
    """Clean, store and record the form's photos; how many were sent."""
    files = await read_uploads(request)
    if not files:
        return 0
    settings = resources.current().settings
    cleaned = await evidence.clean_and_store_for(session, settings, order_id, files)
    await evidence.record(session, order_id, operator.id, cleaned)
    return len(cleaned)
