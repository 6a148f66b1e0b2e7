"""Our JWTs, signed with REFIT_JWT_SECRET: a seller's access token, an operator's, the
dashboard's cookie and an order stream's ticket. Each kind has an audience of its own, so one
is never taken for another; all are signed here and read back by one decoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from refit.settings import Settings


class InvalidToken(Exception):
    """Its signature, audience or issuer does not hold, or a required claim is missing."""


class ExpiredToken(InvalidToken):
    """Past its `exp`."""


@dataclass(frozen=True)
class Key:
    """What signs and checks them (REFIT_JWT_SECRET, REFIT_JWT_ALGORITHM) and the issuer they
    name (REFIT_PUBLIC_URL). Hashable: a cache of verified tokens keys on it."""

    secret: str
    algorithm: str
    issuer: str

    @classmethod
    def of(cls, settings: Settings) -> Key:
        return cls(settings.jwt_secret, settings.jwt_algorithm, settings.public_url)


def encode(key: Key, claims: Mapping[str, Any]) -> str:
    return jwt.encode(dict(claims), key.secret, algorithm=key.algorithm)


def decode(key: Key, token: str, *, audience: str, required: Sequence[str]) -> dict[str, Any]:
    """The token's claims if its signature, audience, issuer and expiry hold and it carries
    every `required` claim; else `ExpiredToken` or `InvalidToken`."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.secret,
            algorithms=[key.algorithm],
            audience=audience,
            issuer=key.issuer,
            options={"require": list(required)},
        )
    except jwt.ExpiredSignatureError as exc:
        raise ExpiredToken(str(exc)) from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    return claims
