"""The sandbox carrier's webhooks: as Shippo does for a real parcel, it POSTs a Shippo-shaped
`track_updated` to our own endpoint whenever a sandbox parcel's track moves on (on the
sandbox's clock, or when an operator pushes it). So the embedded default plays the whole
journey through the code that runs in production: token (and signature) check, inbox, job,
the carrier re-read, the moves.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import queue, resources, tls
from refit.carriers.picker import carrier_name
from refit.carriers.sandbox.carrier import PUSH_TASK, SandboxCarrier, push_lock
from refit.carriers.sandbox.tracking import tracking_of
from refit.carriers.shippo.wire import sign, track_body
from refit.models.shipping import SandboxObject
from refit.settings import Settings
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)

DELIVERY_TIMEOUT_SECONDS = 10.0


@queue.queue.task(name=PUSH_TASK, retry=queue.exponential_retry(8, 2))
async def push_tracking_task(tracking_number: str) -> str:
    """Deliver the parcel's track as a webhook unless its current status was delivered."""
    res = resources.current()
    async with service_transaction() as session:
        row = await _parcel(session, tracking_number)
    if row is None:
        return "no such sandbox parcel"
    tracking = tracking_of(row.data, row.data.get("carrier", "usps"))
    if row.data.get("webhook_status") == tracking.status.value:
        return f"{tracking.status.value} already delivered"
    body = {"event": "track_updated", "test": True, "data": track_body(tracking)}
    await deliver(res.settings, body)
    # After the POST: a crash in between delivers it again, which the inbox absorbs.
    async with service_transaction() as session:
        row = await _parcel(session, tracking_number, for_update=True)
        if row is not None:
            row.data = {**row.data, "webhook_status": tracking.status.value}
    return f"delivered {tracking.status.value}"


async def deliver(settings: Settings, body: dict[str, Any]) -> None:
    """POST one webhook the way Shippo does: the URL token, and the signature when a secret is
    configured. Anything but a 2xx raises, so the job retries."""
    # httpx costs ~0.1-0.4 s of CPU at import: paid at the first delivery, not at every start.
    import httpx

    raw = httpx.Request("POST", "http://x", json=body).content
    headers = {"Content-Type": "application/json"}
    if settings.shippo_webhook_hmac_secret:
        stamp = int(time.time())
        digest = sign(settings.shippo_webhook_hmac_secret, stamp, raw)
        headers["Shippo-Auth-Signature"] = f"t={stamp},v1={digest}"
    url = f"{settings.public_url.rstrip('/')}/api/webhooks/shippo"
    async with httpx.AsyncClient(
        timeout=DELIVERY_TIMEOUT_SECONDS, verify=tls.client_context()
    ) as client:
        response = await client.post(
            url, params={"token": settings.shippo_webhook_token}, content=raw, headers=headers
        )
    response.raise_for_status()


@queue.queue.periodic(cron="* * * * *")
@queue.queue.task(name="shipping.sandbox_tracking_clock", queueing_lock="shipping.sandbox_clock")
async def tracking_clock_task(timestamp: int) -> int:
    return await tracking_clock()


async def tracking_clock() -> int:
    """Queue a push for every sandbox parcel whose track moved on since its last webhook."""
    res = resources.current()
    if carrier_name(res.settings) != SandboxCarrier.name:
        return 0
    async with service_transaction(job=True) as session:
        rows = (
            await session.scalars(
                select(SandboxObject)
                .where(
                    SandboxObject.kind == "transaction",
                    SandboxObject.data["status"].astext == "SUCCESS",
                    SandboxObject.data["webhook_status"].astext.is_distinct_from("DELIVERED"),
                )
                .order_by(SandboxObject.created_at)
                .limit(1000)
            )
        ).all()
        queued = 0
        for row in rows:
            status = tracking_of(row.data, "").status.value
            if status != row.data.get("webhook_status"):
                number = row.data["tracking_number"]
                job = await queue.defer(
                    session, PUSH_TASK, queueing_lock=push_lock(number), tracking_number=number
                )
                queued += job is not None
    return queued


async def _parcel(
    session: AsyncSession, tracking_number: str, *, for_update: bool = False
) -> SandboxObject | None:
    query = select(SandboxObject).where(
        SandboxObject.kind == "transaction",
        SandboxObject.data["tracking_number"].astext == tracking_number,
    )
    return await session.scalar(query.with_for_update() if for_update else query)
