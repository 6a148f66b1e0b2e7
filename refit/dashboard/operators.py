"""Operators (admins only): the list, a new one, approving a new admin, disabling one. The
same service functions as /api/admin/operators.

A refused new operator (a username taken or not one, a password too short) comes back on the
page with the username and role as typed and the problem by its field; the password is never
sent back (the admin types it again)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.admin import operators
from refit.dashboard import forms
from refit.dashboard.forms import Kept
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


# The new operator's fields in the page's order, and the refusals' codes by field.
NEW_FIELDS = ("username", "password", "role")
FIELD_OF_CODE = {
    "invalid_username": "username",
    "operator_exists": "username",
    "password_too_short": "password",
    "password_too_long": "password",
}


async def _page(
    request: Request,
    session: AsyncSession,
    *,
    done: str | None = None,
    new: Kept | None = None,
) -> HTMLResponse:
    rows = (await session.scalars(select(Operator).order_by(Operator.username))).all()
    return page(
        request,
        "operators.html",
        status_code=new.status if new else 200,
        operators=rows,
        roles=list(OperatorRole),
        done=done,
        new=new,
    )


@router.get("/operators", response_class=HTMLResponse)
async def operators_page(
    request: Request, session: SessionDep, operator: AdminDep, done: str | None = None
) -> HTMLResponse:
    return await _page(request, session, done=DONE.get(done or ""))


@router.post("/operators")
async def create_operator(
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    # Longer than the rules allow, so that the rules (not a bare 422) say what is wrong.
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=operators.MAX_PASSWORD_LENGTH + 1)] = "",
    role: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    new = Kept(NEW_FIELDS, values={"username": username.strip(), "role": role})
    try:
        chosen = OperatorRole(role)
    except ValueError:
        new.errors["role"] = "Choose a role"
    else:
        made, refused = await forms.attempt(
            session,
            lambda: operators.create_operator(
                session, username, password, chosen, created_by=operator.actor
            ),
        )
        if made is not None:
            done = "created_admin" if made.awaiting_approval else "created"
            return RedirectResponse(f"/admin/operators?done={done}", status_code=303)
        assert refused is not None
        new.refuse(refused, FIELD_OF_CODE)
    return await _page(request, session, new=new)


@router.post("/operators/{username}/approve")
async def approve_operator(username: str, session: SessionDep, operator: AdminDep) -> Response:
    await operators.approve_operator(session, username, approver=operator)
    return RedirectResponse("/admin/operators?done=approved", status_code=303)


@router.post("/operators/{username}/disable")
async def disable_operator(username: str, session: SessionDep, operator: AdminDep) -> Response:
    await operators.disable_operator(session, username, actor=operator.actor)
    return RedirectResponse("/admin/operators?done=disabled", status_code=303)
