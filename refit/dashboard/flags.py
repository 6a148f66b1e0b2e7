"""Feature flags (admins, as /api/admin/flags): every flag with its rule, and a form per flag
that changes it through `flags.service.set_flag`, the API's one writer, which records the
change with the operator as its actor (feature_flag_audit, shown on the audit trail page).
A form that does not validate comes back with what was typed and the problem by its field."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from refit.dashboard.audit import names_of
from refit.dashboard.render import page
from refit.dashboard.session import AdminDep, DashboardOperator
from refit.errors import Unprocessable
from refit.flags import service
from refit.flags.schemas import FlagChange, FlagRead
from refit.models.flag import FlagMode
from refit.transactions import SessionDep

router = APIRouter()

_SPLIT = re.compile(r"[\s,]+")
FIELDS = ("mode", "percent", "wallets", "variants", "description")


def _variants(text: str) -> list[dict[str, Any]]:
    """ "control:1, treatment:3" (a weight left out is 1)."""
    found: list[dict[str, Any]] = []
    for item in filter(None, _SPLIT.split(text)):
        name, _, weight = item.partition(":")
        found.append({"name": name, "weight": weight or 1})
    return found


def _change(form: dict[str, str]) -> tuple[FlagChange | None, dict[str, str]]:
    """The FlagChange the form says, or the problems by field."""
    try:
        return (
            FlagChange.model_validate(
                {
                    "mode": form["mode"],
                    "percent": form["percent"] or 0,
                    "wallets": [w for w in _SPLIT.split(form["wallets"]) if w],
                    "variants": _variants(form["variants"]),
                    "description": form["description"],
                }
            ),
            {},
        )
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "mode"
            errors.setdefault(field if field in FIELDS else "mode", error["msg"])
        return None, errors


def _values(flag: FlagRead | None) -> dict[str, str]:
    """A flag as its form shows it."""
    if flag is None:
        return {
            "name": "",
            "mode": "off",
            "percent": "0",
            "wallets": "",
            "variants": "",
            "description": "",
        }
    return {
        "name": flag.name,
        "mode": flag.mode.value,
        "percent": str(flag.percent),
        "wallets": "\n".join(flag.wallets),
        "variants": ", ".join(f"{v.name}:{v.weight}" for v in flag.variants),
        "description": flag.description,
    }


async def _page(
    request: Request,
    session: AsyncSession,
    *,
    done: str | None = None,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    flags = await service.list_flags(session)
    # Each form: (values, problems by field); a refused one shows what was typed.
    forms: dict[str, tuple[dict[str, str], dict[str, str]]] = {
        flag.name: (_values(flag), {}) for flag in flags
    }
    forms[""] = (_values(None), {})
    if typed is not None:
        key = typed["name"] if typed["name"] in forms else ""
        forms[key] = (typed, errors or {})
    names = await names_of(session, {flag.updated_by for flag in flags})
    return page(
        request,
        "flags.html",
        status_code=status_code,
        flags=flags,
        forms=forms,
        names=names,
        modes=list(FlagMode),
        done=done,
    )


@router.get("/flags", response_class=HTMLResponse)
async def flags_page(
    request: Request, session: SessionDep, operator: AdminDep, done: str | None = None
) -> HTMLResponse:
    shown = f"Flag {done} saved; every process has it within a second or so." if done else None
    return await _page(request, session, done=shown)


@router.post("/flags", response_model=None)
async def change_flag(
    request: Request,
    session: SessionDep,
    operator: AdminDep,
    name: Annotated[str, Form(max_length=64)],
    mode: Annotated[str, Form(max_length=16)],
    percent: Annotated[str, Form(max_length=8)] = "",
    wallets: Annotated[str, Form(max_length=800_000)] = "",
    variants: Annotated[str, Form(max_length=2000)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    typed = {
        "name": name.strip(),
        "mode": mode,
        "percent": percent.strip(),
        "wallets": wallets,
        "variants": variants,
        "description": description,
    }
    change, errors = _change(typed)
    if change is not None:
        try:
            await _set(session, operator, typed["name"], change)
        except Unprocessable as exc:
            errors = {"name": exc.detail}
    if errors:
        return await _page(request, session, typed=typed, errors=errors, status_code=422)
    return RedirectResponse(f"/admin/flags?done={typed['name']}", status_code=303)


async def _set(
    session: AsyncSession, operator: DashboardOperator, name: str, change: FlagChange
) -> None:
    await service.set_flag(session, name, change, operator.actor)
