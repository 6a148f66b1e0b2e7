"""Email verification: a one-time token by mail (stored hashed, expiring, single-use).

The token table and users' email columns are written in the service role: the seller's own
role may only read their user row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy import exists, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from refit import transactions
from refit.errors import BadRequest, Conflict, ProblemError, RateLimited, Unauthorized
from refit.models import EmailVerificationToken, User
from refit.notifications.service import queue_email
from refit.settings import Settings

log = structlog.get_logger(__name__)

Token = EmailVerificationToken


@dataclass(frozen=True)
class VerificationSent:
    email: str
    expires_at: dt.datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def confirm_link(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/api/auth/verify-email/confirm?token={token}"


async def _seconds_until_resend(
    session: AsyncSession, settings: Settings, user_id: uuid.UUID, email: str
) -> int:
    # Throttled per seller and per address: many wallets cannot flood one inbox either.
    remaining = await session.scalar(
        select(
            func.extract(
                "epoch",
                func.max(Token.created_at) + text("make_interval(secs => :interval)") - func.now(),
            )
        ).where(or_(Token.user_id == user_id, func.lower(Token.email) == email.lower())),
        {"interval": settings.email_resend_interval_seconds},
    )
    return max(0, math.ceil(remaining)) if remaining is not None else 0


async def request_verification(
    session: AsyncSession, settings: Settings, user_id: uuid.UUID, email: str
) -> VerificationSent:
    """Store a hashed token for (user, email) and queue the mail carrying it."""
    token = secrets.token_urlsafe(32)
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.email_token_ttl_seconds)
    await session.flush()
    async with transactions.as_service(session):
        # The user row lock serialises one seller's requests, so the throttle below holds
        # under concurrency.
        user = await session.scalar(select(User).where(User.id == user_id).with_for_update())
        if user is None:
            raise Unauthorized("This account no longer exists", code="user_not_found")
        if user.email_verified and (user.email or "").lower() == email.lower():
            raise Conflict("This email is already verified", code="email_already_verified")
        taken = await session.scalar(
            select(exists().where(func.lower(User.email) == email.lower(), User.id != user_id))
        )
        if taken:
            raise Conflict("This email belongs to another account", code="email_taken")
        wait = await _seconds_until_resend(session, settings, user_id, email)
        if wait:
            raise RateLimited(
                "A verification email was sent moments ago; try again later",
                code="email_resend_throttled",
                headers={"Retry-After": str(wait)},
                extra={"retry_after": wait},
            )
        session.add(
            Token(user_id=user_id, email=email, token_hash=hash_token(token), expires_at=expires_at)
        )
        await session.flush()
    await queue_email(
        session,
        to=email,
        template="verify_email",
        context={
            "email": email,
            "link": confirm_link(settings, token),
            "token": token,
            "expires_hours": max(1, round(settings.email_token_ttl_seconds / 3600)),
        },
        user_id=user_id,
        redact_after_send=True,
    )
    log.info("auth.email_verification_sent", user_id=str(user_id))
    return VerificationSent(email=email, expires_at=expires_at)


async def _refusal(
    session: AsyncSession, token_hash: str, user_id: uuid.UUID | None
) -> ProblemError:
    """Why a token did not confirm: unknown, already used, or expired."""
    query = select(Token.used_at, Token.expires_at).where(Token.token_hash == token_hash)
    if user_id is not None:
        query = query.where(Token.user_id == user_id)
    row = (await session.execute(query)).one_or_none()
    if row is None:
        return BadRequest("This verification code is not valid", code="email_token_invalid")
    if row.used_at is not None:
        return Conflict("This verification code has already been used", code="email_token_used")
    return ProblemError(
        "This verification code has expired; ask for a new one",
        code="email_token_expired",
        status=410,
    )


async def confirm(session: AsyncSession, token: str, user_id: uuid.UUID | None = None) -> User:
    """Consume a token and mark its email verified on its user. With `user_id` (the POST from a
    signed-in seller) the token must be that seller's. A refusal writes nothing."""
    token_hash = hash_token(token)
    await session.flush()
    async with transactions.as_service(session), session.begin_nested():
        conditions = [
            Token.token_hash == token_hash,
            Token.used_at.is_(None),
            Token.expires_at > func.now(),
        ]
        if user_id is not None:
            conditions.append(Token.user_id == user_id)
        # Single use even under concurrency: the UPDATE's row lock lets one request through.
        row = (
            await session.execute(
                update(Token)
                .where(*conditions)
                .values(used_at=func.now())
                .returning(Token.user_id, Token.email)
            )
        ).one_or_none()
        if row is None:
            raise await _refusal(session, token_hash, user_id)
        try:
            async with session.begin_nested():
                await session.execute(
                    update(User)
                    .where(User.id == row.user_id)
                    .values(email=row.email, email_verified=True)
                    .execution_options(synchronize_session=False)
                )
        except IntegrityError as exc:  # verified by another wallet since the mail was sent
            raise Conflict("This email belongs to another account", code="email_taken") from exc
        # The seller's other outstanding codes die with this confirmation.
        await session.execute(
            update(Token)
            .where(Token.user_id == row.user_id, Token.used_at.is_(None))
            .values(used_at=func.now())
        )
        user = await session.scalar(
            select(User).where(User.id == row.user_id).execution_options(populate_existing=True)
        )
    assert user is not None
    log.info("auth.email_verified", user_id=str(user.id))
    return user
