"""The inspection form: what was found, the photos from the tablet's camera, and the price
that follows, shown before the verdict is given (the catalog's, as the verdict computes it).

A refused submit never loses work: the form comes back (422) with every value as typed, each
problem by its field, and the photos held (stored, named by hidden inputs, recorded only with
the verdict): see inspect_form.py and photos.hold."""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refit import resources
from refit.catalog.prices import catalog_price
from refit.catalog.schemas import storage_sort_key
from refit.dashboard import forms, inspect_form, photos
from refit.dashboard.inspect_form import Typed
from refit.dashboard.orders import to_order
from refit.dashboard.render import page
from refit.dashboard.session import OperatorDep
from refit.errors import Conflict, NotFound
from refit.inspection import checklist, evidence, service
from refit.inspection.schemas import Screen
from refit.models import Order, OrderStatus
from refit.models.catalog import CatalogModel, CatalogVariant, ConditionGrade
from refit.orders.service import get_order
from refit.storage import LabelNotFound, label_storage
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


def _field_order(item_codes: tuple[str, ...]) -> list[str]:
    # The page's order of fields: the first with a problem gets the focus.
    return [
        "grade",
        "storage",
        "imei",
        "serial",
        "powers_on",
        "activation_lock_off",
        "screen",
        "battery_health_pct",
        *(f"item.{code}" for code in item_codes),
        "notes",
        "photos",
        "override_price_usd",
        "override_reason",
    ]


async def _form(
    request: Request,
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    typed: Typed | None = None,
    errors: dict[str, str] | None = None,
    held: list[str] | None = None,
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
    codes = checklist.items_for(order.device_category)
    errors = errors or {}
    if typed is None:
        # Nothing pre-chosen but the storage quoted (the verdict's own default).
        typed = Typed(storage=order.device_storage or "")
        typed.items = dict.fromkeys(codes, checklist.Answer.NOT_CHECKED.value)
    return page(
        request,
        "inspect.html",
        status_code=status_code,
        order=order,
        category=checklist.category_of(order.device_category),
        grades=grades,
        storages=list(table),
        screens=[(s.value, checklist.SCREEN_LABELS[s.value]) for s in Screen],
        items=[(code, checklist.ITEMS[code]) for code in codes],
        answers=checklist.ANSWER_LABELS,
        labels={
            "powers_on": checklist.POWERS_ON,
            "activation_lock_off": checklist.ACTIVATION_LOCK_OFF,
        },
        typed=typed,
        errors=errors,
        first_error=forms.first_error(errors, _field_order(codes)),
        held=held or [],
        prices_json=json.dumps(table).replace("<", "\\u003c"),
    )


@router.get("/orders/{order_id}/inspect", response_class=HTMLResponse)
async def inspect_page(
    order_id: uuid.UUID, request: Request, session: SessionDep, operator: OperatorDep
) -> HTMLResponse:
    return await _form(request, session, order_id)


@router.get("/orders/{order_id}/held-photos/{name}")
async def held_photo(
    order_id: uuid.UUID, name: str, session: SessionDep, operator: OperatorDep
) -> Response:
    """A photo the inspection form holds (stored, not yet recorded): for its thumbnail."""
    key = evidence.held_key(order_id, name)
    if key is None:
        raise NotFound(f"No photo {name}", code="photo_not_found")
    try:
        data = await label_storage(resources.current().settings).get(key[0])
    except LabelNotFound as exc:
        raise NotFound(f"No photo {name}", code="photo_not_found") from exc
    return Response(
        content=data,
        media_type=key[1],
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.post("/orders/{order_id}/inspect")
async def give_verdict(
    order_id: uuid.UUID, request: Request, session: SessionDep, operator: OperatorDep
) -> Response:
    order = await get_order(session, order_id)
    typed = inspect_form.typed(await request.form(), checklist.items_for(order.device_category))
    errors = inspect_form.problems(typed)
    # The photos first, whatever else is wrong: stored now, so never picked again.
    held, problem = await photos.hold(session, order_id, request)
    if problem is not None:
        errors.setdefault("photos", problem.detail)
    if not errors:
        try:
            data = inspect_form.to_create(typed)
        except ValidationError as exc:
            errors = inspect_form.by_field(exc)
        else:

            async def verdict() -> None:
                await service.inspect(session, order_id, operator, data)
                await evidence.record(session, order_id, operator.id, held)

            # A savepoint: a refused verdict leaves nothing behind, not even a photo's row.
            _, refused = await forms.attempt(session, verdict)
            if refused is None:
                return to_order(order_id, "inspected")
            # A refusal of what was typed is the form's to show; a conflict (the order moved,
            # an inspector's override) is the page's.
            if refused.status != 422:
                raise refused
            errors = {inspect_form.field_of(refused): refused.detail}
    return await _form(
        request,
        session,
        order_id,
        typed=typed,
        errors=errors,
        held=[evidence.held_name(order_id, photo) for photo in held],
        status_code=422,
    )
