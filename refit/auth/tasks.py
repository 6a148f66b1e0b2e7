"""Housekeeping of the sign-in tables."""

from __future__ import annotations

import structlog
from sqlalchemy import text

from refit.queue import queue
from refit.transactions import service_transaction

log = structlog.get_logger(__name__)


@queue.periodic(cron="41 * * * *")
@queue.task(name="auth.purge_expired", queueing_lock="auth.purge_expired")
async def purge_expired(timestamp: int) -> dict[str, int]:
    """Delete nonces and email codes well past their expiry (a used or expired one can never
    succeed again, so keeping them only costs index space)."""
    async with service_transaction(job=True) as session:
        nonces = await session.execute(
            text("DELETE FROM siws_nonces WHERE expires_at < now() - interval '1 day'")
        )
        codes = await session.execute(
            text(
                "DELETE FROM email_verification_tokens "
                "WHERE expires_at < now() - interval '30 days'"
            )
        )
    counts = {"nonces": nonces.rowcount, "email_tokens": codes.rowcount}  # type: ignore[attr-defined]
    log.info("auth.purged_expired", **counts)
    return counts
