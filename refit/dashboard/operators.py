"""Operators (admins only): the list, a new one, approving a new admin, disabling one. The
same service functions as /api/admin/operators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from refit.admin import operators
from refit.dashboard.render import page
from refit.dashboard.session import AdminDep
from refit.models import Operator, OperatorRole
from refit.transactions import SessionDep

router = APIRouter()

DONE = {
    "created": "Operator created.",
    "created_admin": "Admin created: it can sign in once a second admin, made before it "
    "and not by you, approves it.",
    "approved": "Admin approved: it can sign in now.",
    "disabled": "Operator disabled.",
}


@router.get("/operators", response_class=HTMLResponse)
async def operators_page(
    request: Request, session: SessionDep, operator: AdminDep, done: str | None = None
) -> HTMLResponse:
    rows = (await session.scalars(select(Operator).order_by(Operator.username))).all()
    return page(
        request,
        "operators.html",
        operators=rows,
        roles=list(OperatorRole),
        done=DONE.get(done or ""),
    )


@router.post("/operators")
async def create_operator(
    session: SessionDep,
    operator: AdminDep,
    username: Annotated[str, Form(max_length=32)],
    password: Annotated[str, Form(max_length=operators.MAX_PASSWORD_LENGTH)],
    role: Annotated[OperatorRole, Form()],
) -> Response:
    made = await operators.create_operator(
        session, username, password, role, created_by=operator.actor
    )
    done = "created_admin" if made.awaiting_approval else "created"
    return RedirectResponse(f"/admin/operators?done={done}", status_code=303)


@router.post("/operators/{username}/approve")
async def approve_operator(username: str, session: SessionDep, operator: AdminDep) -> Response:
    await operators.approve_operator(session, username, approver=operator)
    return RedirectResponse("/admin/operators?done=approved", status_code=303)


@router.post("/operators/{username}/disable")
async def disable_operator(username: str, session: SessionDep, operator: AdminDep) -> Response:
    await operators.disable_operator(session, username, actor=operator.actor)
    return RedirectResponse("/admin/operators?done=disabled", status_code=303)
