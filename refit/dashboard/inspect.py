"""The inspection form: what was found, the photos from the tablet's camera, and the price
that follows, shown before the verdict is given (the catalog's, as the verdict computes it)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit.catalog.prices import catalog_price
from refit.catalog.schemas import storage_sort_key
from refit.dashboard import photos
from refit.dashboard.orders import to_order
from refit.dashboard.render import page
from refit.dashboard.session import OperatorDep
from refit.errors import Conflict
from refit.inspection import service
from refit.inspection.schemas import Checklist, InspectionCreate, Screen
from refit.models import Order, OrderStatus
from refit.models.catalog import CatalogModel, CatalogVariant, ConditionGrade
from refit.orders.service import get_order
from refit.transactions import SessionDep

router = APIRouter()


async def price_table(session: AsyncSession, order: Order) -> dict[str, dict[str, str]]:
    """{storage: {grade: USD}} for this model: each one the catalog's price, looked up as the
    verdict looks it up (catalog_price), so the preview is the price the verdict will give."""
    variants = (
        await session.scalars(
            select(CatalogVariant.storage)
            .join(CatalogModel, CatalogModel.id == CatalogVariant.model_id)
            .where(
                CatalogModel.brand.ilike(order.device_brand),
                CatalogModel.model.ilike(order.device_model),
            )
        )
    ).all()
    grades = (
        await session.scalars(select(ConditionGrade.code).order_by(ConditionGrade.sort_order))
    ).all()
    table: dict[str, dict[str, str]] = {}
    for storage in sorted(set(variants), key=storage_sort_key):
        table[storage] = {}
        for grade in grades:
            found = await catalog_price(
                session, order.device_brand, order.device_model, storage, grade, active_only=False
            )
            table[storage][grade] = str(found.price_usd)
    return table


async def _form(
    request: Request,
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    order = await get_order(session, order_id)
    if order.status is not OrderStatus.INSPECTING:
        raise Conflict(
            f"Order {order.order_number} is {order.status.value}; the inspection form is for "
            "an order in inspecting",
            code="invalid_order_state",
        )
    table = await price_table(session, order)
    grades = (
        await session.execute(
            select(ConditionGrade.code, ConditionGrade.name, ConditionGrade.description)
            .where(ConditionGrade.is_active)
            .order_by(ConditionGrade.sort_order)
        )
    ).all()
    return page(
        request,
        "inspect.html",
        status_code=status_code,
        order=order,
        grades=grades,
        storages=list(table),
        screens=list(Screen),
        prices_json=json.dumps(table).replace("<", "\\u003c"),
        errors=errors or [],
    )


@router.get("/orders/{order_id}/inspect", response_class=HTMLResponse)
async def inspect_form(
    order_id: uuid.UUID, request: Request, session: SessionDep, operator: OperatorDep
) -> HTMLResponse:
    return await _form(request, session, order_id)


def _checked(value: str | None) -> bool:
    return value is not None and value != ""


@router.post("/orders/{order_id}/inspect")
async def give_verdict(
    order_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    grade: Annotated[str, Form(max_length=32)],
    screen: Annotated[str, Form(max_length=16)],
    notes: Annotated[str, Form(max_length=4000)] = "",
    storage: Annotated[str, Form(max_length=16)] = "",
    imei: Annotated[str, Form(max_length=32)] = "",
    serial: Annotated[str, Form(max_length=64)] = "",
    battery_health_pct: Annotated[str, Form(max_length=3)] = "",
    powers_on: Annotated[str | None, Form()] = None,
    activation_lock_off: Annotated[str | None, Form()] = None,
    override_price_usd: Annotated[str, Form(max_length=12)] = "",
    override_reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        data = InspectionCreate(
            grade=grade,
            storage=storage or None,
            imei=imei or None,
            serial=serial or None,
            checklist=Checklist(
                powers_on=_checked(powers_on),
                activation_lock_off=_checked(activation_lock_off),
                screen=Screen(screen),
                battery_health_pct=int(battery_health_pct) if battery_health_pct else None,
            ),
            notes=notes,
            override_price_usd=Decimal(override_price_usd) if override_price_usd else None,
            override_reason=override_reason or None,
        )
    except (ValidationError, ValueError, ArithmeticError) as exc:
        problems = (
            [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            if isinstance(exc, ValidationError)
            else [str(exc)]
        )
        return await _form(request, session, order_id, errors=problems, status_code=422)
    # Photos first: they are evidence of what the verdict says, in the same transaction.
    await photos.add(session, order_id, operator, request)
    await service.inspect(session, order_id, operator, data)
    return to_order(order_id, "inspected")
