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
from refit.inspection.evidence import EVIDENCE_STATUSES, EVIDENCE_UPLOAD_PATH, CleanPhoto
from refit.settings import Settings

__all__ = ["EVIDENCE_STATUSES", "add", "body_limits", "hold"]

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


# The hidden inputs of the inspection form naming the photos it holds (evidence.held_name).
HELD_FIELD = "held_photos"


async def hold(
    session: AsyncSession, order_id: uuid.UUID, request: Request
) -> tuple[list[CleanPhoto], ProblemError | None]:
    """The inspection form's photos, stored but not recorded: those held from a refused submit
    (read back by name) and those chosen now (checked, cleaned and stored as any upload). The
    rows are written with the verdict (`evidence.record`), so a refused verdict records
    nothing and the form shows them again without asking for the files. A photo that cannot
    be taken is the problem returned (with the others still held); a refused order raises."""
    settings = resources.current().settings
    form = await request.form()
    names = [n for n in form.getlist(HELD_FIELD) if isinstance(n, str) and n]
    photos: list[CleanPhoto] = []
    problem: ProblemError | None = None
    for name in list(dict.fromkeys(names))[: evidence.MAX_PHOTOS_PER_UPLOAD]:
        try:
            photos.append(await evidence.held(settings, order_id, name))
        except ProblemError as exc:
            problem = exc
    try:
        files = await read_uploads(request)
        if len(photos) + len(files) > evidence.MAX_PHOTOS_PER_UPLOAD:
            raise ProblemError(
                f"At most {evidence.MAX_PHOTOS_PER_UPLOAD} photos per inspection form",
                status=422,
                code="invalid_photo_count",
            )
        if files:
            photos += await evidence.clean_and_store_for(session, settings, order_id, files)
    except ProblemError as exc:
        if exc.status not in (413, 422):
            raise
        problem = exc
    unique = {evidence.held_name(order_id, photo): photo for photo in photos}
    return list(unique.values()), problem
