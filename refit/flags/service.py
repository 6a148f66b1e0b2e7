"""Reading and changing flags. One writer: `set_flag`, which audits the change and tells every
process (pg_notify, delivered at commit) in the caller's transaction."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from refit.errors import NotFound, Unprocessable
from refit.flags.rules import FlagRule, Variant
from refit.flags.schemas import NAME_PATTERN, FlagAuditRead, FlagChange, FlagRead
from refit.models.flag import Flag, FlagAudit, FlagExposure, FlagMode

# Every API process follows it on its one LISTEN connection (refit/listen.py,
# flags/follower.py); the payload is the flag's name.
FLAGS_CHANNEL = "feature_flags"

# What the followers and the fallback read: small, whole, and only what evaluating needs.
RULES_SQL = "SELECT name, mode, percent, wallets, variants FROM feature_flags"


def rule_from_row(
    name: str, mode: str, percent: int, wallets: Iterable[str], variants: Sequence[Any]
) -> FlagRule:
    return FlagRule(
        name=name,
        mode=FlagMode(mode),
        percent=percent,
        wallets=frozenset(wallets),
        variants=tuple(Variant(v["name"], int(v["weight"])) for v in variants),
    )


async def load_rules(session: AsyncSession) -> dict[str, FlagRule]:
    """Every flag's rule, read in the caller's (service-role) transaction."""
    rows = await session.execute(text(RULES_SQL))
    return {row.name: rule_from_row(*row) for row in rows}


def _state(flag: Flag) -> dict[str, Any]:
    """What the audit keeps of a flag, before and after a change."""
    return {
        "mode": str(flag.mode),
        "percent": flag.percent,
        "wallets": list(flag.wallets),
        "variants": list(flag.variants),
        "description": flag.description,
    }


async def set_flag(session: AsyncSession, name: str, change: FlagChange, actor: str) -> Flag:
    """Create or change a flag; a change that changes nothing writes nothing. Flushes; the
    caller's transaction commits, and with it the audit row and the notification."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise Unprocessable(
            "A flag name is 1-64 characters: a-z, 0-9, '.', '_', '-', starting with a letter "
            "or digit",
            code="invalid_flag_name",
        )
    created = await session.scalar(
        insert(Flag)
        .values(name=name, mode=FlagMode.OFF, updated_by=actor)
        .on_conflict_do_nothing(index_elements=[Flag.name])
        .returning(Flag.id)
    )
    # The row lock orders concurrent changes, so each audit row's `before` is the state the
    # change really replaced.
    flag = (
        await session.scalars(
            select(Flag)
            .where(Flag.name == name)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()
    before = None if created is not None else _state(flag)
    flag.mode = change.mode
    if change.percent is not None:
        flag.percent = change.percent
    if change.wallets is not None:
        flag.wallets = change.wallets
    if change.variants is not None:
        flag.variants = [v.model_dump() for v in change.variants]
    if change.description is not None:
        flag.description = change.description
    after = _state(flag)
    if after == before:
        return flag
    flag.updated_by = actor
    # clock_timestamp(), not now(): taken under the row lock, so the audit's order is the order
    # in which the changes were applied, even when the later one's transaction began first.
    session.add(
        FlagAudit(
            flag_id=flag.id,
            actor=actor,
            before=before,
            after=after,
            created_at=func.clock_timestamp(),
        )
    )
    await session.execute(
        text("SELECT pg_notify(:channel, :name)"), {"channel": FLAGS_CHANNEL, "name": name}
    )
    await session.flush()
    await session.refresh(flag)  # updated_at, from the trigger
    return flag


async def list_flags(session: AsyncSession) -> list[FlagRead]:
    """Every flag with its exposures per variant (by name)."""
    flags = (await session.scalars(select(Flag).order_by(Flag.name))).all()
    counted = await session.execute(
        select(FlagExposure.flag_id, FlagExposure.variant, FlagExposure.exposures)
    )
    exposures: dict[Any, dict[str, int]] = {}
    for flag_id, variant, count in counted:
        exposures.setdefault(flag_id, {})[variant] = count
    return [
        FlagRead.model_validate(flag).model_copy(update={"exposures": exposures.get(flag.id, {})})
        for flag in flags
    ]


async def get_flag(session: AsyncSession, name: str) -> Flag:
    flag = await session.scalar(select(Flag).where(Flag.name == name))
    if flag is None:
        raise NotFound(f"No flag named {name!r}", code="flag_not_found")
    return flag


async def flag_audit(session: AsyncSession, flag: Flag) -> list[FlagAuditRead]:
    """The flag's changes, oldest first."""
    rows = await session.scalars(
        select(FlagAudit)
        .where(FlagAudit.flag_id == flag.id)
        .order_by(FlagAudit.created_at, FlagAudit.id)
    )
    return [FlagAuditRead.model_validate(row) for row in rows]


async def exposures_of(session: AsyncSession, flag: Flag) -> dict[str, int]:
    rows = await session.execute(
        select(FlagExposure.variant, FlagExposure.exposures).where(FlagExposure.flag_id == flag.id)
    )
    return {variant: count for variant, count in rows}
