"""Photo evidence of an inspection: checked, cleaned, stored, and served by signed URL.

A photo is accepted by what its bytes are (Pillow reads them), never by the content type the
client claims: JPEG, PNG and WebP only. It is re-encoded from its pixels, upright (the EXIF
orientation applied first), with no metadata at all: no EXIF (GPS position, camera serial,
time), no XMP, no ICC profile, no text chunks. The cleaned file goes to refit.storage under
`evidence/<order_id>/<photo_id>.<ext>`; the photo id is derived from the order and the cleaned
bytes, so a retried upload stores the same file under the same key and adds no second row.

Decoding and re-encoding are CPU work: they run in a thread, before any row is locked.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from refit.errors import Conflict, ProblemError, Unprocessable
from refit.inspection.schemas import EvidenceRead
from refit.models import OrderStatus as S
from refit.models.inspection import EvidencePhoto
from refit.orders.service import get_order
from refit.settings import Settings
from refit.signed_urls import evidence_photo_url
from refit.storage import LabelNotFound, label_storage

if TYPE_CHECKING:
    from PIL import Image

log = structlog.get_logger(__name__)

# Pillow's format name -> (content type, file extension, save options).
FORMATS: dict[str, tuple[str, str, dict[str, object]]] = {
    "JPEG": ("image/jpeg", "jpg", {"quality": 90, "optimize": True}),
    "PNG": ("image/png", "png", {"optimize": True}),
    "WEBP": ("image/webp", "webp", {"quality": 90}),
}
# A phone photo is 12-50 megapixels; more is refused as a decompression bomb (under Pillow's
# own warning threshold of ~89 megapixels, so decoding never starts on one).
MAX_PIXELS = 80_000_000
MAX_PHOTOS_PER_UPLOAD = 20
# Namespace of photo ids (uuid5 of order id and the cleaned bytes' digest).
_PHOTO_IDS = uuid.UUID("5d0f4b8e-2c1a-4f7e-9a63-0e8b7c2d41f5")


@dataclass(frozen=True)
class CleanPhoto:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    sha256: str


# While the device is with us: received and after, until it goes home.
EVIDENCE_STATUSES = frozenset({S.RECEIVED, S.INSPECTING, S.OFFER_PENDING, S.RETURNING})


EVIDENCE_UPLOAD_PATH = r"/api/admin/orders/[^/]+/evidence"
# Room for the multipart framing around the photos themselves.
_MULTIPART_OVERHEAD = 64 * 1024


def body_limits(settings: Settings) -> dict[str, int]:
    """The routes allowed a body above REFIT_MAX_BODY_BYTES (errors.BodyLimit's `larger`)."""
    return {EVIDENCE_UPLOAD_PATH: settings.evidence_max_bytes + _MULTIPART_OVERHEAD}


def too_large(settings: Settings) -> ProblemError:
    return ProblemError(
        f"The photos are over {settings.evidence_max_bytes} bytes in all",
        status=413,
        code="payload_too_large",
    )


def clean(data: bytes, filename: str | None = None) -> CleanPhoto:
    """The photo re-encoded upright without metadata; 422 `unsupported_image` for anything
    that is not a JPEG, PNG or WebP image Pillow can decode."""
    # Pillow costs ~0.05 s of CPU at import: only cleaning photos needs it, not every start.
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = filename or "the file"
    try:
        source = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise Unprocessable(
            f"{name} is not a JPEG, PNG or WebP image", code="unsupported_image"
        ) from None
    except Exception as exc:
        # A header cut short or garbled (Pillow raises OSError, SyntaxError, struct.error ...).
        raise Unprocessable(f"{name} cannot be read ({exc})", code="unsupported_image") from None
    fmt = source.format
    if fmt not in FORMATS:
        raise Unprocessable(
            f"{name} is {fmt or 'not an image'}; send JPEG, PNG or WebP", code="unsupported_image"
        )
    if source.width * source.height > MAX_PIXELS:
        raise Unprocessable(f"{name} has too many pixels", code="unsupported_image")
    try:
        source.load()
        upright = ImageOps.exif_transpose(source)
    except Exception as exc:
        # Truncated or corrupt pixel data, or EXIF too broken to read: bad input, not a crash.
        raise Unprocessable(f"{name} cannot be read ({exc})", code="unsupported_image") from None
    content_type, extension, options = FORMATS[fmt]
    pixels = _for_format(upright, fmt)
    # Only the pixels go on: whatever the source carried in `info` (exif, icc_profile, xmp,
    # PNG text chunks) is dropped, and the encoder is given none.
    pixels.info = {}
    out = io.BytesIO()
    pixels.save(out, fmt, **options)
    cleaned = out.getvalue()
    return CleanPhoto(
        data=cleaned,
        content_type=content_type,
        extension=extension,
        width=pixels.width,
        height=pixels.height,
        sha256=hashlib.sha256(cleaned).hexdigest(),
    )


def _for_format(image: Image.Image, fmt: str) -> Image.Image:
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        return image.convert("RGB")
    if fmt == "WEBP" and image.mode not in ("RGB", "RGBA"):
        return image.convert("RGBA" if "A" in image.getbands() else "RGB")
    if fmt == "PNG" and image.mode not in ("1", "L", "LA", "RGB", "RGBA", "I", "I;16"):
        return image.convert("RGBA")
    return image.copy()


async def clean_all(files: list[tuple[str | None, bytes]]) -> list[CleanPhoto]:
    """Each (filename, bytes) cleaned, one thread for the lot: CPU work off the event loop."""
    return await asyncio.to_thread(lambda: [clean(data, name) for name, data in files])


def photo_id(order_id: uuid.UUID, photo: CleanPhoto) -> uuid.UUID:
    return uuid.uuid5(_PHOTO_IDS, f"{order_id}:{photo.sha256}")


def storage_key(order_id: uuid.UUID, photo_id: uuid.UUID, extension: str) -> str:
    return f"evidence/{order_id}/{photo_id}.{extension}"


async def store(settings: Settings, order_id: uuid.UUID, photos: list[CleanPhoto]) -> None:
    """Write the cleaned files (a network call with a bucket: hold no row lock around it).
    A file whose row never commits is an orphan nobody can reach: no URL names it."""
    storage = label_storage(settings)
    for photo in photos:
        key = storage_key(order_id, photo_id(order_id, photo), photo.extension)
        await storage.put(key, photo.data, photo.content_type)


# A photo stored by a form whose verdict was refused, named by the form that shows it again:
# "<photo id>.<extension>" under the order's own evidence folder.
_HELD = re.compile(
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(jpg|png|webp)"
)
_CONTENT_TYPES = {extension: content_type for content_type, extension, _ in FORMATS.values()}


def held_name(order_id: uuid.UUID, photo: CleanPhoto) -> str:
    return f"{photo_id(order_id, photo)}.{photo.extension}"


def held_key(order_id: uuid.UUID, name: str) -> tuple[str, str] | None:
    """The storage key and content type of a held photo's name; None for any other name."""
    found = _HELD.fullmatch(name)
    if found is None:
        return None
    return storage_key(order_id, uuid.UUID(found.group(1)), found.group(2)), _CONTENT_TYPES[
        found.group(2)
    ]


async def held(settings: Settings, order_id: uuid.UUID, name: str) -> CleanPhoto:
    """A photo cleaned and stored by an earlier submit of the order's inspection form (its
    verdict refused: no row was written), read back to be recorded with the verdict. Its id is
    the digest of its bytes, so a name can only bring back what we stored for this order."""
    key = held_key(order_id, name)
    gone = Unprocessable("A kept photo is no longer there; choose it again", code="photo_gone")
    if key is None:
        raise gone
    try:
        data = await label_storage(settings).get(key[0])
    except LabelNotFound:
        raise gone from None

    def measure() -> tuple[int, int]:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size

    width, height = await asyncio.to_thread(measure)
    extension = name.rsplit(".", 1)[1]
    photo = CleanPhoto(
        data=data,
        content_type=key[1],
        extension=extension,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    if held_name(order_id, photo) != name:
        raise gone
    return photo


async def record(
    session: AsyncSession, order_id: uuid.UUID, operator_id: uuid.UUID, photos: list[CleanPhoto]
) -> list[EvidencePhoto]:
    """The rows of the stored photos, in upload order; a photo already recorded for the order
    (the same cleaned bytes) is not added twice."""
    ids = []
    for photo in photos:
        pid = photo_id(order_id, photo)
        ids.append(pid)
        await session.execute(
            insert(EvidencePhoto)
            .values(
                id=pid,
                order_id=order_id,
                storage_key=storage_key(order_id, pid, photo.extension),
                content_type=photo.content_type,
                bytes=len(photo.data),
                width=photo.width,
                height=photo.height,
                sha256=photo.sha256,
                uploaded_by=operator_id,
                # The statement's own moment: photos of one upload keep their order.
                created_at=func.clock_timestamp(),
            )
            .on_conflict_do_nothing(index_elements=[EvidencePhoto.id])
        )
    rows = {
        row.id: row
        for row in await session.scalars(select(EvidencePhoto).where(EvidencePhoto.id.in_(ids)))
    }
    log.info("inspection.evidence_recorded", order_id=str(order_id), photos=len(ids))
    return [rows[pid] for pid in dict.fromkeys(ids)]


async def clean_and_store_for(
    session: AsyncSession,
    settings: Settings,
    order_id: uuid.UUID,
    files: list[tuple[str | None, bytes]],
) -> list[CleanPhoto]:
    """Photos of an order whose device is with us (409 otherwise), cleaned and stored: the CPU
    work and the storage write come before any lock (the order is read, not locked). Both the
    API's and the dashboard's upload go through here, then `record` in their transaction."""
    order = await get_order(session, order_id)
    if order.status not in EVIDENCE_STATUSES:
        raise Conflict(
            f"Order {order.order_number} is {order.status.value}; photos are taken while the "
            "device is with us (received and after)",
            code="invalid_order_state",
        )
    cleaned = await clean_all(files)
    await store(settings, order.id, cleaned)
    return cleaned


async def photos_of(session: AsyncSession, order_id: uuid.UUID) -> list[EvidencePhoto]:
    return list(
        await session.scalars(
            select(EvidencePhoto)
            .where(EvidencePhoto.order_id == order_id)
            .order_by(EvidencePhoto.created_at, EvidencePhoto.id)
        )
    )


def evidence_read(settings: Settings, photo: EvidencePhoto) -> EvidenceRead:
    """A photo as operators and the API show it: its URL signed for a few minutes."""
    return EvidenceRead(
        id=photo.id,
        url=evidence_photo_url(settings, photo.id),
        content_type=photo.content_type,
        bytes=photo.bytes,
        width=photo.width,
        height=photo.height,
        sha256=photo.sha256,
        uploaded_by=photo.uploaded_by,
        created_at=photo.created_at,
    )
