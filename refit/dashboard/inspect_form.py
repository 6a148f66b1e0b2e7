"""The inspection form as typed, and its problems by field: a refused submit is shown again
with every value kept and each problem beside its field (the form's own checks, the input
model's and the verdict's refusals alike)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from pydantic import ValidationError
from starlette.datastructures import FormData

from refit.errors import ProblemError
from refit.inspection.checklist import Answer
from refit.inspection.schemas import Checklist, InspectionCreate, Screen
from refit.inspection.service import identity_problem

ANSWERS = {a.value for a in Answer}
# The verdict's refusals (problem codes) and the field each is about; others go on top.
FIELD_OF_CODE = {
    "invalid_imei": "imei",
    "device_identity_required": "imei",
    "override_reason_required": "override_reason",
    "override_price_not_positive": "override_price_usd",
    "unknown_condition": "grade",
    "unknown_storage": "storage",
    "storage_required": "storage",
    "unsupported_image": "photos",
    "invalid_photo_count": "photos",
    "payload_too_large": "photos",
    "photo_gone": "photos",
}


@dataclass
class Typed:
    """What the inspector typed or chose, as the browser sent it (strings)."""

    grade: str = ""
    storage: str = ""
    imei: str = ""
    serial: str = ""
    powers_on: str = Answer.NOT_CHECKED.value
    activation_lock_off: str = Answer.NOT_CHECKED.value
    screen: str = ""
    battery_health_pct: str = ""
    items: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    override_price_usd: str = ""
    override_reason: str = ""

    @property
    def imei_digits(self) -> str:
        # As InspectionCreate reads it: "35-209900-176148-1" is the same IMEI.
        return self.imei.replace(" ", "").replace("-", "")


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def typed(form: FormData, item_codes: tuple[str, ...]) -> Typed:
    return Typed(
        grade=_text(form, "grade"),
        storage=_text(form, "storage"),
        imei=_text(form, "imei"),
        serial=_text(form, "serial"),
        powers_on=_text(form, "powers_on") or Answer.NOT_CHECKED.value,
        activation_lock_off=_text(form, "activation_lock_off") or Answer.NOT_CHECKED.value,
        screen=_text(form, "screen"),
        battery_health_pct=_text(form, "battery_health_pct"),
        items={
            code: _text(form, f"item.{code}") or Answer.NOT_CHECKED.value for code in item_codes
        },
        notes=_text(form, "notes"),
        override_price_usd=_text(form, "override_price_usd"),
        override_reason=_text(form, "override_reason"),
    )


def problems(t: Typed) -> dict[str, str]:
    """The form's own checks, all at once (the verdict would stop at the first)."""
    found: dict[str, str] = {}
    if not t.grade:
        found["grade"] = "Choose the grade whose definition fits what you found"
    if t.powers_on not in (Answer.YES, Answer.NO):
        found["powers_on"] = "Check whether it powers on: the verdict needs yes or no"
    if t.activation_lock_off not in (Answer.YES, Answer.NO):
        found["activation_lock_off"] = "Check the activation lock: the verdict needs yes or no"
    if t.screen not in {s.value for s in Screen}:
        found["screen"] = "Say what the screen is like"
    if t.battery_health_pct and not (
        t.battery_health_pct.isdigit() and 0 <= int(t.battery_health_pct) <= 100
    ):
        found["battery_health_pct"] = "A whole number from 0 to 100, or leave it empty"
    for code, answer in t.items.items():
        if answer not in ANSWERS:
            found[f"item.{code}"] = "Answer yes, no or not checked"
    identity = identity_problem(t.imei_digits or None, t.serial or None)
    if identity is not None:
        found["imei"] = identity.detail
    if t.override_price_usd:
        try:
            Decimal(t.override_price_usd)
        except InvalidOperation:
            found["override_price_usd"] = "An amount in dollars, like 250.00"
    return found


def to_create(t: Typed) -> InspectionCreate:
    """The verdict's input (raises ValidationError): call after `problems` found none."""
    return InspectionCreate(
        grade=t.grade,
        storage=t.storage or None,
        imei=t.imei or None,
        serial=t.serial or None,
        checklist=Checklist(
            powers_on=t.powers_on == Answer.YES,
            activation_lock_off=t.activation_lock_off == Answer.YES,
            screen=Screen(t.screen),
            battery_health_pct=int(t.battery_health_pct) if t.battery_health_pct else None,
            items={code: Answer(answer) for code, answer in t.items.items()},
        ),
        notes=t.notes,
        override_price_usd=Decimal(t.override_price_usd) if t.override_price_usd else None,
        override_reason=t.override_reason or None,
    )


def by_field(exc: ValidationError) -> dict[str, str]:
    """The input model's errors by the form field they are about."""
    found: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        name = loc[1] if loc[:1] == ["checklist"] and len(loc) > 1 else (loc[:1] or ["form"])[0]
        if name == "items":
            name = "form"
        found.setdefault(name, str(error["msg"]).removeprefix("Value error, "))
    return found


def field_of(problem: ProblemError) -> str:
    return FIELD_OF_CODE.get(problem.code or "", "form")
