"""A refused form shown again, never lost: what was typed (`Kept.values`), each problem by the
field it is about (`Kept.errors`, "form" for one about the whole form), and the first field
with a problem, which gets the focus. The move itself runs in a savepoint (`attempt`), so a
refusal leaves nothing behind in the request's transaction, which still commits.

The templates' half is form_fields.html (the message by its field, aria-invalid,
aria-describedby, autofocus). The inspection form (inspect_form.py) and the flags form keep
their own richer versions of the fields' half; every dashboard move that may be refused runs
through `attempt` (these forms, the inspection's verdict, the returns' buttons)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from refit.errors import ProblemError

T = TypeVar("T")

FORM = "form"


def first_error(errors: Mapping[str, str], order: list[str]) -> str | None:
    """The first field with a problem, in the page's order: it gets the focus."""
    return next((name for name in order if name in errors), None)


@dataclass
class Kept:
    """One form as the browser sent it (never a password) and its problems by field.
    `fields`: the form's fields in the page's order."""

    fields: tuple[str, ...] = ()
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    status: int = 422

    @property
    def first_error(self) -> str | None:
        return first_error(self.errors, list(self.fields))

    def refuse(self, problem: ProblemError, field_of_code: Mapping[str, str]) -> None:
        """`problem` by the field its code is about (the whole form's otherwise)."""
        self.errors.setdefault(field_of_code.get(problem.code, FORM), problem.detail)
        self.status = problem.status


async def attempt(
    session: AsyncSession, move: Callable[[], Awaitable[T]]
) -> tuple[T | None, ProblemError | None]:
    """`move` in a savepoint: its result, or the refusal it raised with its writes undone."""
    try:
        async with session.begin_nested():
            return await move(), None
    except ProblemError as refused:
        return None, refused
