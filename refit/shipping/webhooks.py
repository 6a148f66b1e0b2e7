"""POST /api/webhooks/shippo: Shippo's track_updated and transaction_updated bodies, verified,
kept once in `webhook_inbox`, and handled by a job (refit/shipping/webhook_tasks.py).

The answer is a 2xx within one short transaction: Shippo redelivers what we do not
acknowledge, so the work that may wait on the carrier happens in the job, never here. A body
delivered again (same event) finds its row and queues nothing; a body we cannot read is kept
with the reason, for an operator, and acknowledged (a redelivery would not read better).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import asyncpg
import structlog
from fastapi import APIRouter, Request, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from refit import inputs, resources
from refit.carriers.picker import sign
from refit.errors import Unauthorized
from refit.settings import Settings

# The task each kept event's job runs, and the provider its rows name (named where the
# intake's statement is written, and here, where the rest of the domain finds them).
from refit.shipping.intake_batch import HANDLE_TASK as HANDLE_TASK
from refit.shipping.intake_batch import PROVIDER as PROVIDER
from refit.shipping.intake_batch import Delivery, batcher_for

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])

# Shippo's HMAC header is `t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` as
# integrators verify it (REFERENCE 1.6: the docs' own text is cut off, so both names Shippo
# has been seen to use are read). A signature older or newer than this is a replay.
SIGNATURE_HEADERS = ("shippo-auth-signature", "shippo-signature")
SIGNATURE_TOLERANCE_SECONDS = 300


# Made fresh for each request: FastAPI adds the dependencies' headers to the one returned.
_ANSWERS = {s: json.dumps({"status": s}).encode() for s in ("accepted", "duplicate", "kept")}


@router.post(
    "/shippo",
    response_model=dict[str, str],
    responses={401: {"description": "Missing or wrong token or signature; nothing stored"}},
)
async def shippo_webhook(request: Request) -> Response:
    """Acknowledge a Shippo webhook: `accepted` (kept and queued), `duplicate` (this event was
    already kept) or `kept` (not readable: kept for an operator, not handled)."""
    return await intake(request)


def fast_route() -> Route:
    """The same endpoint as a plain Starlette route, put first among the app's routes
    (refit/app.py): a carrier's burst is matched at the first route and skips FastAPI's
    dependency solving (the documented route above stays for the OpenAPI). Every middleware
    still runs (request id, access log, metrics, body limit, JSON guard), errors are answered
    by the same handlers, and the one app-wide dependency, the unstorable-input check, is
    called here."""

    async def endpoint(request: Request) -> Response:
        await inputs.refuse_unstorable_input(request)
        return await intake(request)

    return _NamedRoute(
        router.prefix + "/shippo", endpoint, methods=["POST"], include_in_schema=False
    )


class _NamedRoute(Route):
    """A Starlette route that names itself in the scope as FastAPI's do: the access log and
    metrics label requests by `scope["route"].path`."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


async def intake(request: Request) -> Response:
    """Verify, keep once (and queue on the first keeping), answer."""
    # Checked before json.loads: no NUL or lone surrogate escape, nesting within bounds.
    raw = await inputs.body_to_parse_as_json(request)
    res = resources.current()
    verify(res.settings, request, raw)
    event, body, key, error = parse(raw)
    try:
        kept = await _keep(res, raw, event, body, key, error)
    except asyncpg.DataError as exc:
        if body is None:
            raise
        # JSON PostgreSQL's jsonb cannot hold (a number beyond numeric's range, which
        # json.loads reads as inf or 0.0): kept as unreadable, like any body we cannot read.
        error = f"not storable as jsonb: {exc}"
        event, body, key = None, None, _digest(raw)
        kept = await _keep(res, raw, event, body, key, error)
    if kept is None:
        log.info("shipping.webhook_duplicate", webhook_event=event, key=key)
        return _answer("duplicate")
    if error is not None:
        log.warning("shipping.webhook_unreadable", inbox_id=str(kept), error=error)
        return _answer("kept")
    return _answer("accepted")


async def _keep(
    res: resources.Resources,
    raw: bytes,
    event: str | None,
    body: dict[str, Any] | None,
    key: str,
    error: str | None,
) -> Any:
    """The new row's id, or None when this event was already kept: kept with this process's
    other deliveries of the moment, in one statement and one commit (intake_batch)."""
    return await batcher_for(res.hot_path).keep(delivery(raw, event, body, key, error))


def delivery(
    raw: bytes, event: str | None, body: dict[str, Any] | None, key: str, error: str | None
) -> Delivery:
    """What a delivery's row holds, as `parse` read `raw`; its job's origin is the request's."""
    text = raw.decode("utf-8", "replace")
    test = body.get("test") if body is not None else None
    return Delivery(
        event=event,
        key=key,
        test=test if isinstance(test, bool) else None,
        # The bytes as sent, which PostgreSQL parses into the same jsonb (never dumped
        # again here): parse() read them strictly as UTF-8 JSON without NaN or Infinity.
        body=text if body is not None else None,
        raw=None if body is not None else text,
        error=error,
    )


def _answer(status: str) -> Response:
    return Response(_ANSWERS[status], media_type="application/json")


def verify(settings: Settings, request: Request, raw: bytes) -> None:
    """The URL token always (constant time); the HMAC signature too when a secret is set."""
    token = request.query_params.get("token", "")
    if not hmac.compare_digest(token.encode(), settings.shippo_webhook_token.encode()):
        raise Unauthorized("Missing or wrong webhook token", code="webhook_unauthorized")
    secret = settings.shippo_webhook_hmac_secret
    if secret is None:
        return
    header = next((request.headers[h] for h in SIGNATURE_HEADERS if h in request.headers), "")
    parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(parts.get("t", ""))
    except ValueError:
        stamp = 0
    if abs(time.time() - stamp) > SIGNATURE_TOLERANCE_SECONDS:
        _signature_refused(request, "missing, stale or malformed")
        raise Unauthorized("Missing, stale or malformed signature", code="webhook_unauthorized")
    expected = sign(secret, stamp, raw)
    if not hmac.compare_digest(parts.get("v1", "").encode(), expected.encode()):
        _signature_refused(request, "wrong")
        raise Unauthorized("Wrong webhook signature", code="webhook_unauthorized")


def _signature_refused(request: Request, why: str) -> None:
    # The header's name and format are as integrators report them, not confirmed by Shippo's
    # docs (REFERENCE 1.6): if every signed delivery is refused, these lines say which
    # headers Shippo did send (names only: the values are secrets' proofs).
    log.warning(
        "shipping.webhook_signature_refused",
        why=why,
        signature_headers=[h for h in request.headers if "signature" in h.lower()],
    )


def parse(raw: bytes) -> tuple[str | None, dict[str, Any] | None, str, str | None]:
    """(event, body, dedupe key, error). The key names the event, not the delivery: Shippo
    sends no event id, so it is built from what identifies the carrier's update."""
    try:
        # Strictly UTF-8 and without NaN or Infinity: the body is stored as the bytes sent,
        # which PostgreSQL's jsonb must read as json.loads did.
        body = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except ValueError as exc:
        return None, None, _digest(raw), f"not JSON: {exc}"
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        return None, None, _digest(raw), "not a Shippo webhook: expected {event, test, data}"
    event = str(body.get("event") or "")
    data = body["data"]
    if event == "track_updated":
        status = data.get("tracking_status")
        current = status if isinstance(status, dict) else {}
        parts = [
            data.get("carrier"),
            data.get("tracking_number"),
            current.get("object_id"),
            current.get("status"),
            current.get("status_date"),
        ]
        if not data.get("tracking_number"):
            return event, None, _digest(raw), "track_updated without a tracking_number"
    elif event == "transaction_updated":
        if not data.get("object_id"):
            return event, None, _digest(raw), "transaction_updated without an object_id"
        parts = [data.get("object_id"), data.get("status"), data.get("object_updated")]
    else:
        # Other events (transaction_created, batches) are kept; the job records it ignored them.
        return event, body, _bounded(f"{event}:{_digest(raw)}"), None
    return event, body, _bounded(":".join([event, *(str(p or "") for p in parts)])), None


# The key's unique index is a btree, whose entries hold at most 2,704 bytes: a key built from
# a long event name or tracking number would fail the insert (SQLSTATE 54000, a 500). Past
# this size a key is its start and the digest of the whole, the same for every delivery of
# that event; keys up to this size (every real event's is far shorter) stay as they were.
KEY_MAX_BYTES = 2000


def _bounded(key: str) -> str:
    encoded = key.encode()
    if len(encoded) <= KEY_MAX_BYTES:
        return key
    return f"{key[:64]}:{_digest(encoded)}"


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()
