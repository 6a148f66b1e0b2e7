"""One order's page, as read for a GET and as shown again with a refused form on it (the
cancel reason, the resolve's transaction signature): what was typed kept in its field and the
problem by it (forms.Kept, by form name)."""

from __future__ import annotations

import uuid
from collections import defaultdict

from fastapi import Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import resources
from refit.backoffice.reads import order_story
from refit.dashboard import actions, live, payout_panel, photos, returns, summary
from refit.dashboard.forms import Kept
from refit.dashboard.render import page
from refit.dashboard.session import DashboardOperator
from refit.errors import NotFound
from refit.models import Operator


async def _actor_names(session: AsyncSession, actors: list[str]) -> dict[str, str]:
    ids = []
    for actor in actors:
        kind, _, who = actor.partition(":")
        if kind == "operator":
            try:
                ids.append(uuid.UUID(who))
            except ValueError:
                continue
    if not ids:
        return {}
    rows = await session.execute(select(Operator.id, Operator.username).where(Operator.id.in_(ids)))
    return {f"operator:{op_id}": name for op_id, name in rows.all()}


async def render_order(
    request: Request,
    session: AsyncSession,
    operator: DashboardOperator,
    order_id: uuid.UUID,
    *,
    glance: live.OrderGlance | None = None,
    done: str | None = None,
    kept: dict[str, Kept] | None = None,
) -> HTMLResponse:
    """The order page; with `kept`, a refused form's answer (its status, e.g. 409 or 422).
    That answer does not update itself: its URL is the form's (a POST), and a refresh would
    replace the message and the kept value with the order as it is."""
    glance = glance or await live.order_glance(session, order_id)
    story = await order_story(session, resources.current().settings, order_id)
    if glance is None:
        raise NotFound("No such order", code="order_not_found")
    actors = [h.actor for h in story.history]
    if story.inspection is not None:
        actors.append(f"operator:{story.inspection.operator_id}")
    payout_state, payout_moves = None, set()
    if story.payout is not None:
        actors += [story.payout.requested_by, story.payout.approved_by or ""]
        max_usd = resources.current().settings.payout_max_usd
        payout_state = payout_panel.state_in_words(story.payout, max_usd)
        payout_moves = payout_panel.offered(story.payout, operator, max_usd)
    refused = max((k.status for k in (kept or {}).values()), default=None)
    response = page(
        request,
        "order.html",
        status_code=refused or 200,
        story=story,
        actions=actions.allowed(story, operator),
        done=done,
        names=await _actor_names(session, actors),
        photo_statuses=sorted(photos.EVIDENCE_STATUSES),
        payout_state=payout_state,
        payout_moves=payout_moves,
        returns=await returns.panel(session, request, story, operator),
        who_acts=summary.who_acts(story, payout_state),
        price_label=summary.price_label(story),
        show_eta=summary.show_eta(story),
        glance=glance,
        kept=defaultdict(lambda: None, kept or {}),
        live_stamp=None if refused else glance.stamp,
    )
    if not refused:
        response.headers[live.HEADER] = glance.stamp
    return response
