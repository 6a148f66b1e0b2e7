"""Operator accounts: create, disable, set a password, and check one at sign-in.

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
from sqlalchemy.ext.asyncio import AsyncSession

from refit.errors import ProblemError
from refit.models import Operator, OperatorRole

log = structlog.get_logger(__name__)

MIN_PASSWORD_LENGTH = 12
# Long enough for any passphrase; short enough that a body cannot make us hash megabytes.
MAX_PASSWORD_LENGTH = 1024
# The same rule as the database's ck_operators_username, on the lower-cased name.
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")

_hasher = PasswordHasher()


class OperatorError(ProblemError):
    status, code = 422, "invalid_operator"


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
    session: AsyncSession, username: str, password: str, role: OperatorRole
) -> Operator:
    """A new operator with this password and role; OperatorError if the name is taken."""
    name = normalize_username(username)
    check_password(password)
    if await session.scalar(select(exists().where(Operator.username == name))):
        raise OperatorError(f"An operator named {name!r} already exists", code="operator_exists")
    operator = Operator(username=name, password_hash=await hash_password(password), role=role)
    session.add(operator)
    await session.flush()
    log.info("operators.created", operator_id=str(operator.id), role=str(role))
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


async def disable_operator(session: AsyncSession, username: str) -> Operator:
    """Refuse the operator's sign-ins and tokens from now on. Disabling twice keeps the first
    date."""
    operator = await _get(session, username)
    if operator.disabled_at is None:
        operator.disabled_at = await session.scalar(select(func.now()))
        await session.flush()
        log.info("operators.disabled", operator_id=str(operator.id))
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


async def create_first_admin(session: AsyncSession, password: str) -> Operator | None:
    """The embedded default's `admin` operator, made only while there is no operator at all.
    The password is not held to the CLI's minimum: the default is the well-known dev one."""
    if await session.scalar(select(exists().select_from(Operator))):
        return None
    operator = Operator(
        username="admin", password_hash=await hash_password(password), role=OperatorRole.ADMIN
    )
    session.add(operator)
    await session.flush()
    log.info("operators.first_admin_created", operator_id=str(operator.id))
    return operator
