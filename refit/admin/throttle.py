"""The operators' one throttled sign-in, for both doors (POST /api/admin/login and the
dashboard's form): failures per username and per address counted in one place, each attempt
taking its slot before its password is checked."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from refit import ratelimit, resources
from refit.admin import operators
from refit.admin.deps import AwaitingApproval
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
    often, whatever the password, ServiceUnavailable (503) when the counts cannot be
    read or written (without Redis, guessing would be unlimited), and AwaitingApproval (403)
    for the right password of an admin no second admin has approved yet."""
    res = resources.current()
    # The attempt takes its slot, in both windows at once, before the password is looked
    # at: checking first and counting the failure after let 40 guesses sent together all
    # read "no failures yet" and all be tried.
    slot = await ratelimit.take_slot(res, _limits(res, username.strip().lower(), ip))
    operator = await operators.authenticate(session, username, password)
    if operator is not None:
        # The right password gives its slot back: the windows count failed guesses, so an
        # operator signing in again and again (the dashboard, the API, a script) never locks
        # themselves or their office's address out. Wrong guesses stay bounded whatever the
        # concurrency: a guess holds its slot from before its check until the window has
        # passed, and only a guess that was right, which has nothing left to find, frees
        # one. A check that fails on the way (the database down) keeps its slot: its
        # outcome is unknown, so it counts as a guess.
        await ratelimit.give_back(res, slot)
        if operator.awaiting_approval:
            # After the password: a stranger learns nothing of the account. The request's
            # transaction rolls back with the 403, the sign-in time with it.
            raise AwaitingApproval
    return operator
