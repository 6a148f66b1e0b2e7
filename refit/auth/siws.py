"""Sign-In With Solana messages (Phantom's spec, modelled on EIP-4361).

We build the text we ask a wallet to sign, and check what a wallet sent back: any UTF-8 text
that parses to the same fields is accepted (wallets with the `signIn` feature build the text
themselves from our fields). Pure functions: no database, no clock of their own.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import base58
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from refit.errors import Unauthorized

HEADER = " wants you to sign in with your Solana account:"
VERSION = "1"

# The layout of @solana/wallet-standard-util's parseSignInMessageText, fields in their fixed
# order, each optional; the statement is one line (the spec forbids newlines in it).
_MESSAGE = re.compile(
    r"(?P<domain>[^\n]+?) wants you to sign in with your Solana account:\n"
    r"(?P<address>[^\n]+)(?:\n|\Z)"
    r"(?:\n(?P<statement>[^\n]+)(?:\n|\Z))??"
    r"(?:\nURI: (?P<uri>[^\n]+))?"
    r"(?:\nVersion: (?P<version>[^\n]+))?"
    r"(?:\nChain ID: (?P<chain_id>[^\n]+))?"
    r"(?:\nNonce: (?P<nonce>[^\n]+))?"
    r"(?:\nIssued At: (?P<issued_at>[^\n]+))?"
    r"(?:\nExpiration Time: (?P<expiration_time>[^\n]+))?"
    r"(?:\nNot Before: (?P<not_before>[^\n]+))?"
    r"(?:\nRequest ID: (?P<request_id>[^\n]+))?"
    r"(?:\nResources:(?P<resources>(?:\n- [^\n]+)*))?"
    r"\n*"
)


@dataclass(frozen=True)
class SiwsMessage:
    domain: str
    address: str
    statement: str | None = None
    uri: str | None = None
    version: str | None = None
    chain_id: str | None = None
    nonce: str | None = None
    issued_at: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: list[str] = field(default_factory=list)


def iso(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a Z, as JavaScript's toISOString() writes it."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_message(message: SiwsMessage) -> str:
    """The text a wallet signs (createSignInMessageText's layout)."""
    text = f"{message.domain}{HEADER}\n{message.address}"
    if message.statement:
        text += f"\n\n{message.statement}"
    labelled = [
        ("URI", message.uri),
        ("Version", message.version),
        ("Chain ID", message.chain_id),
        ("Nonce", message.nonce),
        ("Issued At", message.issued_at),
        ("Expiration Time", message.expiration_time),
        ("Not Before", message.not_before),
        ("Request ID", message.request_id),
    ]
    lines = [f"{label}: {value}" for label, value in labelled if value]
    if message.resources:
        lines.append("Resources:")
        lines.extend(f"- {resource}" for resource in message.resources)
    if lines:
        text += "\n\n" + "\n".join(lines)
    return text


def parse_message(text: str) -> SiwsMessage | None:
    match = _MESSAGE.fullmatch(text)
    if match is None:
        return None
    groups = match.groupdict()
    resources = groups.pop("resources")
    return SiwsMessage(
        **groups,  # type: ignore[arg-type]
        resources=resources.split("\n- ")[1:] if resources else [],
    )


def origin(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) lowercased, default ports dropped: how browsers compare origins."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return scheme, host
    return scheme, f"{host}:{port}"


def domain_of(public_url: str) -> str:
    """host[:port] of our public URL: the `domain` a message must name."""
    return origin(public_url)[1]


def normalise_chain(chain_id: str) -> str:
    # Phantom accepts both "mainnet" and "solana:mainnet".
    return chain_id.strip().lower().removeprefix("solana:")


def decode_public_key(address: str) -> bytes | None:
    """The 32 bytes of a base58 Solana address, or None if it is not one (canonically)."""
    try:
        raw = base58.b58decode(address)
    except ValueError:
        return None
    if len(raw) != 32 or base58.b58encode(raw).decode() != address:
        return None
    return raw


def decode_signature(signature: str) -> bytes | None:
    try:
        raw = base58.b58decode(signature)
    except ValueError:
        return None
    return raw if len(raw) == 64 else None


def signature_is_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """ed25519 over the exact message bytes."""
    try:
        VerifyKey(public_key).verify(message, signature)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


def _time(value: str | None, name: str) -> dt.datetime:
    if value is None:
        raise Unauthorized(f"The message has no {name}", code="malformed_message")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise Unauthorized(f"The message's {name} is not a date", code="malformed_message") from exc
    if moment.tzinfo is None:
        raise Unauthorized(f"The message's {name} has no time zone", code="malformed_message")
    return moment


def check_message(
    message: SiwsMessage,
    *,
    wallet_address: str,
    public_url: str,
    chain_id: str,
    statement: str,
    now: dt.datetime,
    clock_skew: dt.timedelta,
) -> str:
    """Check every field against our origin, the wallet and the clock; return the nonce.

    Raises 401 with a specific code on the first field that is wrong or missing.
    """
    if message.address != wallet_address:
        raise Unauthorized("The message names another wallet", code="address_mismatch")
    if message.domain.lower() != domain_of(public_url):
        raise Unauthorized("The message was made for another site", code="domain_mismatch")
    try:
        uri_origin = origin(message.uri) if message.uri is not None else None
    except ValueError as exc:  # e.g. a port that is not a number, an unclosed IPv6 bracket
        raise Unauthorized("The message's URI is malformed", code="malformed_message") from exc
    if uri_origin != origin(public_url):
        raise Unauthorized("The message's URI is not ours", code="uri_mismatch")
    # The statement is what the seller read before signing: one we did not write (a site's
    # "claim your airdrop" over our domain) is not consent to sign in here. A wallet that
    # leaves it out shows none, which misleads no one.
    if message.statement is not None and message.statement != statement:
        raise Unauthorized("The message's statement is not ours", code="statement_mismatch")
    if message.version != VERSION:
        raise Unauthorized("Unsupported message version", code="unsupported_version")
    if message.chain_id is None or normalise_chain(message.chain_id) != normalise_chain(chain_id):
        raise Unauthorized("The message is for another Solana cluster", code="chain_mismatch")
    if not message.nonce:
        raise Unauthorized("The message has no nonce", code="malformed_message")
    issued_at = _time(message.issued_at, "Issued At")
    if abs(now - issued_at) > clock_skew:
        raise Unauthorized(
            "The message's Issued At is too far from our clock", code="issued_at_out_of_range"
        )
    expires_at = _time(message.expiration_time, "Expiration Time")
    if expires_at <= now:
        raise Unauthorized("The message has expired", code="message_expired")
    if message.not_before is not None and _time(message.not_before, "Not Before") > now:
        raise Unauthorized("The message is not valid yet", code="message_not_yet_valid")
    return message.nonce
