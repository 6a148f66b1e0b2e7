"""The operators' one throttled sign-in, for both doors (POST /api/admin/login and the
dashboard's form): failures per username and per address counted in one place."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from refit import ratelimit, resources
from refit.admin import operators
from refit.errors import RateLimited, ServiceUnavailable
from refit.models import Operator
from refit.resources import Resources

_LOGIN = "admin.login"


def _limits(res: Resources, username: str, ip: str) -> list[tuple[str, tuple[str, ...]]]:
    # Per username alone, whatever the address: a password guessed from many addresses is
    # still five tries. The price is that a stranger can lock an operator out for a window,
    # which an operator can live with and a seller's sign-in could not.
    settings = res.settings
    return [
        (settings.rate_limit_operator_login_per_username, (_LOGIN, "username", username)),
        (settings.rate_limit_operator_login_per_ip, (_LOGIN, "ip", ip)),
    ]


async def authenticate(
    session: AsyncSession, username: str, password: str, ip: str
) -> Operator | None:
    """The enabled operator with this username and password, or None (the failure counted).
    Raises RateLimited (429, Retry-After) when the username or the address has failed too
    often, whatever the password, and ServiceUnavailable when the counts cannot be read."""
    res = resources.current()
    limits = _limits(res, username.strip().lower(), ip)
    for limit, identifiers in limits:
        await _refuse_if_over(res, limit, identifiers)
    operator = await operators.authenticate(session, username, password)
    if operator is None:
        for limit, identifiers in limits:
            await _count_failure(res, limit, identifiers)
    return operator


async def _refuse_if_over(res: Resources, limit: str, identifiers: tuple[str, ...]) -> None:
    if not limit:  # turned off, as ratelimit.hit reads it
        return
    item = ratelimit.parse_limit(limit)
    try:
        # A test, not a hit: only failures count (below).
        allowed = await ratelimit._limiter(res).test(item, *identifiers)
    except Exception as exc:
        # Fail closed, as ratelimit.hit does: without Redis, guessing would be unlimited.
        raise ServiceUnavailable(
            "Cannot check the request rate right now", code="rate_limit_unavailable"
        ) from exc
    if not allowed:
        # Over the limit, a hit is refused without counting: the usual 429 with Retry-After.
        await ratelimit.hit(res, limit, *identifiers)


async def _count_failure(res: Resources, limit: str, identifiers: tuple[str, ...]) -> None:
    try:
        await ratelimit.hit(res, limit, *identifiers)
    except RateLimited:
        # Another attempt filled the window meanwhile: this one was let in, it is answered as
        # it deserves; the next is refused.
        pass
