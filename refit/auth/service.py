"""Wallet sign-in: hand out single-use nonces, verify signed messages, create users.

Both functions run in the service role (the public sign-in endpoints have no user yet).
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from dataclasses import dataclass

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from refit.auth import siws
from refit.auth.tokens import AccessToken, issue_access_token
from refit.errors import Unauthorized, Unprocessable
from refit.models import SiwsNonce, User
from refit.settings import Settings

log = structlog.get_logger(__name__)

_NONCE_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class IssuedNonce:
    nonce: str
    message: str
    expires_at: dt.datetime
    sign_in_input: dict[str, str]


@dataclass(frozen=True)
class SignedIn:
    user: User
    token: AccessToken


def new_nonce() -> str:
    # SIWS wants an alphanumeric nonce of 8+ characters; 32 from 62 symbols is ~190 bits.
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(32))


def require_wallet_address(wallet_address: str) -> bytes:
    key = siws.decode_public_key(wallet_address)
    if key is None:
        raise Unprocessable(
            "wallet_address is not a base58 Solana address (32 bytes)",
            code="invalid_wallet_address",
        )
    return key


async def issue_nonce(
    session: AsyncSession, settings: Settings, wallet_address: str
) -> IssuedNonce:
    """Store a nonce for this wallet and return the message it should sign."""
    require_wallet_address(wallet_address)
    now = dt.datetime.now(dt.UTC)
    expires_at = now + dt.timedelta(seconds=settings.siws_nonce_ttl_seconds)
    nonce = new_nonce()
    session.add(
        SiwsNonce(nonce=nonce, wallet_address=wallet_address, issued_at=now, expires_at=expires_at)
    )
    await session.flush()
    fields = siws.SiwsMessage(
        domain=siws.domain_of(settings.public_url),
        address=wallet_address,
        statement=settings.siws_statement,
        uri=settings.public_url,
        version=siws.VERSION,
        chain_id=settings.siws_chain_id,
        nonce=nonce,
        issued_at=siws.iso(now),
        expiration_time=siws.iso(expires_at),
    )
    sign_in_input = {
        "domain": fields.domain,
        "address": wallet_address,
        "statement": settings.siws_statement,
        "uri": settings.public_url,
        "version": siws.VERSION,
        "chainId": settings.siws_chain_id,
        "nonce": nonce,
        "issuedAt": fields.issued_at or "",
        "expirationTime": fields.expiration_time or "",
    }
    return IssuedNonce(nonce, siws.build_message(fields), expires_at, sign_in_input)


def verify_signed_message(
    settings: Settings, wallet_address: str, message: str, signature: str
) -> str:
    """Every check that needs no database, signature first; returns the message's nonce."""
    public_key = siws.decode_public_key(wallet_address)
    if public_key is None:
        raise Unauthorized("wallet_address is not a Solana address", code="invalid_address")
    raw_signature = siws.decode_signature(signature)
    if raw_signature is None:
        raise Unauthorized(
            "signature must be a base58 ed25519 signature (64 bytes)", code="invalid_signature"
        )
    try:
        message_bytes = message.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates survive JSON decoding
        raise Unauthorized("The message is not valid UTF-8", code="malformed_message") from exc
    if not siws.signature_is_valid(public_key, message_bytes, raw_signature):
        raise Unauthorized("The signature does not match the message", code="invalid_signature")
    parsed = siws.parse_message(message)
    if parsed is None:
        raise Unauthorized(
            "The message is not a Sign-In With Solana message", code="malformed_message"
        )
    return siws.check_message(
        parsed,
        wallet_address=wallet_address,
        public_url=settings.public_url,
        chain_id=settings.siws_chain_id,
        statement=settings.siws_statement,
        now=dt.datetime.now(dt.UTC),
        clock_skew=dt.timedelta(seconds=settings.siws_clock_skew_seconds),
    )


async def _consume_nonce(session: AsyncSession, nonce: str, wallet_address: str) -> None:
    # One statement decides: concurrent requests with the same nonce queue on the row lock and
    # re-check `used_at IS NULL` after the winner commits, so exactly one gets a row back.
    consumed = await session.scalar(
        update(SiwsNonce)
        .where(
            SiwsNonce.nonce == nonce,
            SiwsNonce.wallet_address == wallet_address,
            SiwsNonce.used_at.is_(None),
            SiwsNonce.expires_at > func.now(),
        )
        .values(used_at=func.now())
        .returning(SiwsNonce.nonce)
    )
    if consumed is not None:
        return
    row = (
        await session.execute(
            select(SiwsNonce.wallet_address, SiwsNonce.used_at).where(SiwsNonce.nonce == nonce)
        )
    ).one_or_none()
    # Another wallet's nonce is reported as unknown: it says nothing about that wallet.
    if row is None or row.wallet_address != wallet_address:
        raise Unauthorized("This nonce was not issued to this wallet", code="invalid_nonce")
    if row.used_at is not None:
        raise Unauthorized("This nonce has already been used", code="nonce_used")
    raise Unauthorized("This nonce has expired; ask for a new one", code="nonce_expired")


async def _user_for_wallet(session: AsyncSession, wallet_address: str) -> User:
    # Two first sign-ins of one wallet (two nonces) race here: the loser's insert waits on the
    # unique index, does nothing, and the SELECT then sees the winner's committed row.
    await session.execute(
        insert(User)
        .values(wallet_address=wallet_address)
        .on_conflict_do_nothing(index_elements=[User.wallet_address])
    )
    user = await session.scalar(
        select(User)
        .where(User.wallet_address == wallet_address)
        .execution_options(populate_existing=True)
    )
    assert user is not None
    return user


async def connect_wallet(
    session: AsyncSession, settings: Settings, *, wallet_address: str, message: str, signature: str
) -> SignedIn:
    """Verify a signed sign-in message, consume its nonce, create the user on first sign-in.

    The signature and every message field are checked before the nonce is touched, so a forged
    request cannot burn a seller's nonce; the nonce is consumed in the transaction that creates
    the user, so a failure leaves both as they were.
    """
    nonce = verify_signed_message(settings, wallet_address, message, signature)
    await _consume_nonce(session, nonce, wallet_address)
    user = await _user_for_wallet(session, wallet_address)
    log.info("auth.signed_in", user_id=str(user.id))
    return SignedIn(user=user, token=issue_access_token(settings, user.id))
