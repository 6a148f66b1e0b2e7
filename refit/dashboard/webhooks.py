"""The carrier webhook inbox (admins): kept bodies that need a look, in three kinds, and a
replay button that re-queues one through the sweep's own `requeue` (shipping/webhook_inbox.py),
in the operator's transaction, audited."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.dashboard.render import page
from refit.dashboard.session import AdminDep
from refit.models.shipping import WebhookInbox
from refit.shipping import webhook_inbox
from refit.transactions import SessionDep

router = APIRouter()

SHOWN = 100
UNPROCESSED = WebhookInbox.processed_at.is_(None)
# Each kind: its heading, what it means, and the rows (newest first).
KINDS = {
    "attention": (
        "Needs attention",
        "Given up on (handling failed too often) or not readable: nothing retries these.",
        (UNPROCESSED, WebhookInbox.error.is_not(None)),
    ),
    "failing": (
        "Failing, still retried",
        "Handling raised; the job tries again with a growing wait.",
        (UNPROCESSED, WebhookInbox.error.is_(None), WebhookInbox.attempts > 0),
    ),
    "waiting": (
        "Not handled yet",
        "Kept and queued; a worker handles each within seconds.",
        (UNPROCESSED, WebhookInbox.error.is_(None), WebhookInbox.attempts == 0),
    ),
}
DONE = {"replayed": "Webhook queued again: its attempts start from 0."}


async def _rows(session: AsyncSession, kind: str) -> list[WebhookInbox]:
    where = KINDS[kind][2]
    found = await session.scalars(
        select(WebhookInbox)
        .where(*where)
        .order_by(WebhookInbox.received_at.desc(), WebhookInbox.id)
        .limit(SHOWN)
    )
    return list(found.all())


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks_page(
    request: Request, session: SessionDep, operator: AdminDep, done: str | None = None
) -> HTMLResponse:
    kinds = [
        (kind, heading, meaning, await _rows(session, kind))
        for kind, (heading, meaning, _) in KINDS.items()
    ]
    return page(request, "webhooks.html", kinds=kinds, shown=SHOWN, done=DONE.get(done or ""))


@router.post("/webhooks/{inbox_id}/replay")
async def replay(inbox_id: uuid.UUID, session: SessionDep, operator: AdminDep) -> Response:
    await webhook_inbox.replay(session, inbox_id, operator.actor)
    return RedirectResponse("/admin/webhooks?done=replayed", status_code=303)
