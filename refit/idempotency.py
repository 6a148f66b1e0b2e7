"""`Idempotency-Key` for POSTs that create or spend (orders/create, purchase-label, payouts).

Usage inside an endpoint, on the request's one transaction:

    claim = await idempotency.begin(session, claims.user_id, idempotency_key, request, body)
    if claim.replay is not None:
        return claim.replay
    ...do the work...
    return await idempotency.respond(session, claim, 201, OrderRead.model_validate(order))

`begin` inserts the key row before the work runs. A second request with the same key blocks on
that row's unique index until the first transaction ends: if it committed, the second replays
its stored response (same key and body) or gets 409 `idempotency_key_reused` (another body or
endpoint); if it rolled back (the work failed), the second runs the work itself. The key row
and the response are written in the work's own transaction, so a key exists iff the work
committed, and errors (4xx) are never stored: a corrected retry with the same key may succeed.

Keys belong to whoever asked (a seller's id, or "operator:<name>"): two principals may use
the same key. The table is the service's: written with `transactions.as_service` in a seller's
request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession

from refit import one_message, queue, transactions
from refit.errors import BadRequest, Conflict
from refit.models.idempotency import IdempotencyKey

log = structlog.get_logger(__name__)

# Printable ASCII, as Stripe and the IETF draft use (UUIDs fit easily).
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# Long enough for any client retry loop; the rows are small.
KEY_RETENTION = dt.timedelta(days=7)
REPLAY_HEADER = "Idempotent-Replayed"

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retry-safe key: the same key and body return the first response",
    ),
]


_CLAIM = """
INSERT INTO idempotency_keys (principal, key, request_method, request_path, request_hash)
VALUES (%(principal)s, %(key)s, %(method)s, %(path)s, %(hash)s)
ON CONFLICT (principal, key) DO NOTHING
RETURNING id
"""
# In the same message as the claim, and read only when the claim found the key taken: a
# statement of its own, so its snapshot holds the row the claim waited for.
_ANSWERED = """
SELECT id, request_hash, response_status, response_body FROM idempotency_keys
WHERE principal = %(principal)s AND key = %(key)s
"""
_ANSWER = """
UPDATE idempotency_keys SET response_status = %(status)s, response_body = %(body)s
WHERE id = %(id)s
"""


@dataclass(frozen=True)
class _Answered:
    id: uuid.UUID
    request_hash: str
    response_status: int | None
    response_body: str | None


@dataclass(frozen=True)
class Claim:
    """The outcome of `begin`: a response to replay, or a key row (or none) to complete."""

    key_id: uuid.UUID | None
    replay: Response | None = None


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(
        jsonable_encoder(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


def principal_of(who: uuid.UUID | str) -> str:
    """A seller's id as "user:<uuid>"; an operator's "operator:<name>" as it is."""
    return f"user:{who}" if isinstance(who, uuid.UUID) else who


async def begin(
    session: AsyncSession,
    who: uuid.UUID | str,
    key: str | None,
    request: Request,
    body: Any,
) -> Claim:
    """Claim `key` for `who` (a seller's id or "operator:<name>"), or return the stored
    response to replay. No key: no-op."""
    if key is None:
        return Claim(key_id=None)
    if not _KEY.fullmatch(key):
        raise BadRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters",
            code="invalid_idempotency_key",
        )
    method, path = request.method, request.url.path
    digest = request_hash(method, path, body)
    principal = principal_of(who)
    # One round trip (the role switches with it): claim the key, or, when it is taken (ON
    # CONFLICT waited for the transaction that took it to end), read what it answered.
    key_of = {"principal": principal, "key": key}
    claimed, found = await one_message.in_one_message(
        session,
        one_message.Step(
            _CLAIM,
            {**key_of, "method": method, "path": path, "hash": digest},
            as_service=True,
        ),
        one_message.Step(_ANSWERED, key_of, as_service=True),
    )
    if claimed:
        return Claim(key_id=claimed[0]["id"])
    existing = _Answered(**found[0]) if found else None
    if existing is None or existing.response_status is None or existing.response_body is None:
        # Only possible if the row was pruned between the two statements, or was written by
        # code that forgot `respond`: refuse rather than run the work twice.
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry shortly",
            code="idempotency_key_in_progress",
        )
    if existing.request_hash != digest:
        raise Conflict(
            "This Idempotency-Key was used for a different request; use a new key",
            code="idempotency_key_reused",
        )
    log.info("idempotency.replayed", key_id=str(existing.id), path=path)
    return Claim(
        key_id=existing.id,
        replay=Response(
            content=existing.response_body,
            status_code=existing.response_status,
            media_type="application/json",
            headers={REPLAY_HEADER: "true"},
        ),
    )


async def respond(
    session: AsyncSession, claim: Claim, status_code: int, body: BaseModel | Any
) -> JSONResponse:
    """The response to send, stored first under the claimed key (same transaction)."""
    content = jsonable_encoder(body)
    response = JSONResponse(content, status_code=status_code)
    if claim.key_id is not None:
        await one_message.in_one_message(
            session,
            one_message.Step(
                _ANSWER,
                {"status": status_code, "body": bytes(response.body).decode(), "id": claim.key_id},
                as_service=True,
            ),
        )
    return response


async def prune(session: AsyncSession, older_than: dt.timedelta = KEY_RETENTION) -> int:
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < func.now() - older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@queue.queue.periodic(cron="41 * * * *")
@queue.queue.task(name="idempotency.prune", queueing_lock="idempotency.prune")
async def prune_task(timestamp: int) -> int:
    async with transactions.service_transaction(job=True) as session:
        removed = await prune(session)
    log.info("idempotency.pruned", removed=removed)
    return removed
