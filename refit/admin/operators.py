"""Operator accounts: create, approve, disable, set a password, and check one at sign-in.

Who made each operator is recorded (`created_by`): an admin made by another admin works only
once a second, older admin approved it (refit/admin/four_eyes.py); one made from the CLI, by
someone with database access, works at once. Creating, approving and disabling are written to
`operator_audit` in the same transaction.

Passwords are argon2id hashes (argon2-cffi's defaults). Hashing takes tens of milliseconds of
CPU and 64 MiB of memory by design, so it runs in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from refit.admin import audit
from refit.admin.deps import OperatorPrincipal
from refit.admin.four_eyes import require_second_admin
from refit.errors import ProblemError
from refit.models import AuditOutcome, Operator, OperatorRole

log = structlog.get_logger(__name__)

MIN_PASSWORD_LENGTH = 12
# Long enough for any passphrase; short enough that a body cannot make us hash megabytes.
MAX_PASSWORD_LENGTH = 1024
# The same rule as the database's ck_operators_username, on the lower-cased name.
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")

_hasher = PasswordHasher()


# The actors of people with database access (`refit operator`, `refit run`'s first admin).
CLI_ACTOR_PREFIX = "cli:"


class OperatorError(ProblemError):
    status, code = 422, "invalid_operator"


def _subject(operator: Operator) -> str:
    return f"operator:{operator.username}"


def normalize_username(username: str) -> str:
    """The stored form of a username (lower-cased, trimmed); OperatorError if it is not one
    we can store."""
    name = username.strip().lower()
    if not USERNAME.fullmatch(name):
        raise OperatorError(
            "A username is 2 to 32 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or a digit",
            code="invalid_username",
        )
    return name


def check_password(password: str) -> None:
    """OperatorError unless the password is long enough to be one."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise OperatorError(
            f"The password must be at least {MIN_PASSWORD_LENGTH} characters",
            code="password_too_short",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise OperatorError(
            f"The password must be at most {MAX_PASSWORD_LENGTH} characters",
            code="password_too_long",
        )


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the username is unknown, so that answer takes as long as a wrong
    # password for a real operator (hashed with the same parameters, on first use).
    return _hasher.hash(secrets.token_urlsafe(32))


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password)
    except VerificationError:
        return False
    except InvalidHashError:
        log.error("operators.invalid_password_hash")
        return False


async def find(session: AsyncSession, username: str) -> Operator | None:
    return await session.scalar(
        select(Operator).where(Operator.username == normalize_username(username))
    )


async def _get(session: AsyncSession, username: str) -> Operator:
    operator = await find(session, username)
    if operator is None:
        raise OperatorError(f"No operator named {username.strip().lower()!r}", code="not_found")
    return operator


async def create_operator(
    session: AsyncSession, username: str, password: str, role: OperatorRole, *, created_by: str
) -> Operator:
    """A new operator with this password and role, made by `created_by` ("operator:<id>" or
    "cli:<login>"); OperatorError if the name is taken. An admin made by an operator waits
    for a second admin's approval (`approve_operator`); any other works at once."""
    name = normalize_username(username)
    check_password(password)
    taken = OperatorError(f"An operator named {name!r} already exists", code="operator_exists")
    if await session.scalar(select(exists().where(Operator.username == name))):
        raise taken
    operator = Operator(
        username=name,
        password_hash=await hash_password(password),
        role=role,
        created_by=created_by,
    )
    if role is not OperatorRole.ADMIN or created_by.startswith(CLI_ACTOR_PREFIX):
        operator.approved_at, operator.approved_by = func.now(), created_by
    try:
        # Two makers of one name at the same moment both pass the check above; the unique
        # index decides, and the loser is told the name is taken (not a 500).
        async with session.begin_nested():
            session.add(operator)
            await session.flush()
    except IntegrityError as exc:
        raise taken from exc
    await session.refresh(operator, ["approved_at", "created_at"])
    await audit.record(
        session,
        created_by,
        "operator.create",
        _subject(operator),
        AuditOutcome.DONE,
        {"role": str(role), "awaiting_approval": operator.awaiting_approval},
    )
    log.info("operators.created", operator_id=str(operator.id), role=str(role), by=created_by)
    return operator


async def approve_operator(
    session: AsyncSession, username: str, *, approver: OperatorPrincipal
) -> Operator:
    """Let an admin made by another admin work: only a second admin made before it and not by
    its maker (403 four_eyes_refused otherwise, the refusal audited). Approving an operator
    that already works changes nothing."""
    name = normalize_username(username)
    operator = await session.scalar(
        select(Operator)
        .where(Operator.username == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if operator is None:
        raise OperatorError(f"No operator named {name!r}", code="not_found")
    if not operator.awaiting_approval:
        return operator
    await require_second_admin(
        session,
        approver=approver,
        requested_by=operator.created_by or "",
        requested_at=operator.created_at,
        action="operator.approve",
        subject=_subject(operator),
    )
    operator.approved_at, operator.approved_by = func.now(), approver.actor
    await session.flush()
    await session.refresh(operator, ["approved_at"])
    await audit.record(session, approver.actor, "operator.approve", _subject(operator), "done")
    log.info("operators.approved", operator_id=str(operator.id), by=approver.actor)
    return operator


async def set_password(session: AsyncSession, username: str, password: str) -> Operator:
    """Replace the operator's password (tokens already issued stay valid until they expire or
    the operator is disabled)."""
    check_password(password)
    operator = await _get(session, username)
    operator.password_hash = await hash_password(password)
    await session.flush()
    log.info("operators.password_set", operator_id=str(operator.id))
    return operator


async def disable_operator(session: AsyncSession, username: str, *, actor: str) -> Operator:
    """Refuse the operator's sign-ins and tokens from now on (`actor` did it). Disabling twice
    keeps the first date."""
    operator = await _get(session, username)
    if operator.disabled_at is None:
        operator.disabled_at = await session.scalar(select(func.now()))
        await session.flush()
        await audit.record(session, actor, "operator.disable", _subject(operator), "done")
        log.info("operators.disabled", operator_id=str(operator.id), by=actor)
    return operator


async def authenticate(session: AsyncSession, username: str, password: str) -> Operator | None:
    """The enabled operator these credentials belong to, or None: an unknown name, a wrong
    password and a disabled operator are the same None and take the same time (a password is
    verified in every case). On success, records the sign-in and rehashes a hash made with
    older parameters."""
    name = username.strip().lower()
    operator = None
    if USERNAME.fullmatch(name) and len(password) <= MAX_PASSWORD_LENGTH:
        operator = await session.scalar(select(Operator).where(Operator.username == name))
    password_hash = operator.password_hash if operator is not None else None
    matches = await asyncio.to_thread(_verify, password_hash, password)
    if operator is None or not matches or operator.disabled_at is not None:
        return None
    if operator.awaiting_approval:
        return operator  # refused by the caller (throttle.authenticate), nothing recorded
    if _hasher.check_needs_rehash(operator.password_hash):
        operator.password_hash = await hash_password(password)
    # The database's clock, in the same UPDATE (the attribute is not read back).
    operator.last_login_at = func.now()
    await session.flush()
    return operator


async def has_enabled_admin(session: AsyncSession) -> bool:
    return bool(
        await session.scalar(
            select(
                exists().where(Operator.role == OperatorRole.ADMIN, Operator.disabled_at.is_(None))
            )
        )
    )


async def create_first_admin(
    session: AsyncSession, password: str, *, created_by: str
) -> Operator | None:
    """The embedded default's `admin` operator, made only while there is no operator at all,
    by `created_by` (the "cli:<login>" who ran `refit run`: it works at once). The password
    is not held to the CLI's minimum: the default is the well-known dev one."""
    if await session.scalar(select(exists().select_from(Operator))):
        return None
    operator = Operator(
        username="admin",
        password_hash=await hash_password(password),
        role=OperatorRole.ADMIN,
        created_by=created_by,
        approved_at=func.now(),
        approved_by=created_by,
    )
    session.add(operator)
    await session.flush()
    await audit.record(
        session, created_by, "operator.create", _subject(operator), "done", {"role": "admin"}
    )
    log.info("operators.first_admin_created", operator_id=str(operator.id), by=created_by)
    return operator
