"""Short-lived signed URLs for private files (evidence photos): `?expires=<unix>&sig=<hmac>`.

The signature is an HMAC-SHA256, under a key derived from REFIT_JWT_SECRET for this use only,
over the URL's path and its expiry: a URL opens the one file its path names, until it
expires, for whoever holds it. So URLs are only put in responses to those allowed to see the
file (its order's owner, operators), and live minutes (REFIT_EVIDENCE_URL_TTL_SECONDS).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from urllib.parse import urlencode

from refit.errors import ProblemError
from refit.settings import Settings

EVIDENCE_PHOTO_PATH = "/api/evidence/{photo_id}"
_PURPOSE = b"refit.signed-urls.v1"


def _key(settings: Settings) -> bytes:
    # Its own key: a signature made here can never pass as a JWT signature, nor the reverse.
    return hmac.new(settings.jwt_secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _signature(settings: Settings, path: str, expires: int) -> str:
    mac = hmac.new(_key(settings), f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def sign_url(settings: Settings, path: str, ttl_seconds: int, *, now: float | None = None) -> str:
    """The absolute URL of `path` (under REFIT_PUBLIC_URL), valid for `ttl_seconds`."""
    expires = int(now if now is not None else time.time()) + ttl_seconds
    query = urlencode({"expires": expires, "sig": _signature(settings, path, expires)})
    return f"{settings.public_url.rstrip('/')}{path}?{query}"


def verify_url(
    settings: Settings, path: str, expires: int, sig: str, *, now: float | None = None
) -> int:
    """The seconds the URL has left; 403 `invalid_signature` for a signature not made for
    this path and expiry, 403 `url_expired` once it has expired."""
    expected = _signature(settings, path, expires)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        raise ProblemError("This link is not valid", status=403, code="invalid_signature")
    left = expires - int(now if now is not None else time.time())
    if left <= 0:
        raise ProblemError(
            "This link has expired; reload the page for a new one", status=403, code="url_expired"
        )
    return left


def evidence_photo_url(settings: Settings, photo_id: uuid.UUID | str) -> str:
    """A signed URL of one evidence photo, valid for REFIT_EVIDENCE_URL_TTL_SECONDS."""
    path = EVIDENCE_PHOTO_PATH.format(photo_id=photo_id)
    return sign_url(settings, path, settings.evidence_url_ttl_seconds)
