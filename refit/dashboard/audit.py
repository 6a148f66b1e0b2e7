"""The audit trail (admins): what operators did, newest first, from the three places it is
written in the transaction that does it: `operator_audit` (accounts, four-eyes, replays and
retries from these pages), `feature_flag_audit` (flag changes) and the orders' history rows
whose actor is an operator. Keyset paged on (time, id); filtered by operator."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from refit.dashboard.render import page
from refit.dashboard.session import AdminDep
from refit.models import Operator
from refit.pagination import decode_cursor, encode_cursor
from refit.transactions import SessionDep

router = APIRouter()

PAGE = 50
_PREFIX = "operator:"

# One row per act: (at, id, actor, action, subject, outcome, detail). Each branch is paged
# on its own (at, id) index before the union, so a page reads at most PAGE + 1 rows of each.
_BRANCHES = (
    """SELECT at, id, actor, action, subject, outcome, detail FROM operator_audit
       WHERE (CAST(:actor AS text) IS NULL OR actor = :actor) AND {after}""",
    """SELECT a.created_at AS at, a.id, a.actor, 'flag.change' AS action,
              'flag:' || f.name AS subject, 'done' AS outcome,
              jsonb_build_object('before', a.before, 'after', a.after) AS detail
       FROM feature_flag_audit a JOIN feature_flags f ON f.id = a.flag_id
       WHERE (CAST(:actor AS text) IS NULL OR a.actor = :actor)
         AND {after_a}""",
    """SELECT created_at AS at, id, actor, 'order.' || status AS action,
              'order:' || order_id AS subject, 'done' AS outcome,
              jsonb_strip_nulls(jsonb_build_object('from', from_status, 'notes', notes)) AS detail
       FROM order_status_history
       WHERE actor LIKE 'operator:%' AND (CAST(:actor AS text) IS NULL OR actor = :actor)
         AND {after_h}""",
)


@dataclass(frozen=True)
class Act:
    at: dt.datetime
    id: uuid.UUID
    actor: str
    action: str
    subject: str
    outcome: str
    detail: dict[str, Any]

    @property
    def order_id(self) -> str | None:
        return self.subject.removeprefix("order:") if self.subject.startswith("order:") else None


def _after(at: str, row_id: str, cursor: bool) -> str:
    return f"({at}, {row_id}) < (:at, :id)" if cursor else "true"


async def acts(
    session: AsyncSession, *, actor: str | None, cursor: str | None, limit: int = PAGE
) -> tuple[list[Act], str | None]:
    position = decode_cursor(cursor) if cursor else None
    has = position is not None
    branches = [
        _BRANCHES[0].format(after=_after("at", "id", has)),
        _BRANCHES[1].format(after_a=_after("a.created_at", "a.id", has)),
        _BRANCHES[2].format(after_h=_after("created_at", "id", has)),
    ]
    sql = " UNION ALL ".join(
        f"(SELECT * FROM ({b}) x ORDER BY at DESC, id DESC LIMIT :n)"  # noqa: S608 (constants)
        for b in branches
    )
    rows = await session.execute(
        text(f"SELECT * FROM ({sql}) acts ORDER BY at DESC, id DESC LIMIT :n"),  # noqa: S608 (constant clauses; values bound)
        {
            "actor": actor,
            "at": position[0] if position else None,
            "id": position[1] if position else None,
            "n": limit + 1,
        },
    )
    found = [Act(*row) for row in rows.all()]
    shown = found[:limit]
    more = len(found) > limit
    return shown, (encode_cursor(shown[-1].at, shown[-1].id) if more and shown else None)


async def names_of(session: AsyncSession, actors: Iterable[str]) -> dict[str, str]:
    """ "operator:<id>" → the operator's username, for the actors that are operators."""
    ids = set()
    for actor in actors:
        try:
            ids.add(uuid.UUID(actor.removeprefix(_PREFIX)))
        except ValueError:
            continue
    if not ids:
        return {}
    rows = await session.execute(select(Operator.id, Operator.username).where(Operator.id.in_(ids)))
    return {f"{_PREFIX}{row_id}": username for row_id, username in rows.all()}


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    by: str | None = Query(default=None, max_length=32),
    after: str | None = Query(default=None, max_length=200),
) -> HTMLResponse:
    operators = (
        await session.execute(select(Operator.id, Operator.username).order_by(Operator.username))
    ).all()
    chosen = next((f"{_PREFIX}{op_id}" for op_id, name in operators if name == by), None)
    unknown = bool(by) and chosen is None
    shown, next_cursor = (
        ([], None) if unknown else await acts(session, actor=chosen, cursor=after or None)
    )
    return page(
        request,
        "audit.html",
        acts=shown,
        next_cursor=next_cursor,
        names=await names_of(session, {act.actor for act in shown}),
        operators=[name for _, name in operators],
        by=by or "",
        unknown=unknown,
        paged=bool(after),
    )
