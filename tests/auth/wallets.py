"""Real ed25519 wallets and sign-in helpers for the auth tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

import base58
import httpx
from nacl.signing import SigningKey
from sqlalchemy import text

from refit.resources import Resources


class Wallet:
    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.address = base58.b58encode(bytes(self.key.verify_key)).decode()

    def sign(self, message: str) -> str:
        return base58.b58encode(self.key.sign(message.encode()).signature).decode()


def message_text(fields: dict[str, Any]) -> str:
    """A wallet's own rendering of a SolanaSignInInput (createSignInMessageText's layout),
    written here independently of refit.auth.siws."""
    text_ = (
        f"{fields['domain']} wants you to sign in with your Solana account:\n{fields['address']}"
    )
    if fields.get("statement"):
        text_ += f"\n\n{fields['statement']}"
    labels = [
        ("uri", "URI"),
        ("version", "Version"),
        ("chainId", "Chain ID"),
        ("nonce", "Nonce"),
        ("issuedAt", "Issued At"),
        ("expirationTime", "Expiration Time"),
        ("notBefore", "Not Before"),
        ("requestId", "Request ID"),
    ]
    lines = [f"{label}: {fields[key]}" for key, label in labels if fields.get(key)]
    if fields.get("resources"):
        lines.append("Resources:")
        lines.extend(f"- {resource}" for resource in fields["resources"])
    if lines:
        text_ += "\n\n" + "\n".join(lines)
    return text_


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def get_nonce(client: httpx.AsyncClient, wallet: Wallet) -> dict[str, Any]:
    response = await client.post("/api/auth/nonce", json={"wallet_address": wallet.address})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def signed_body(client: httpx.AsyncClient, wallet: Wallet) -> dict[str, str]:
    issued = await get_nonce(client, wallet)
    return {
        "wallet_address": wallet.address,
        "message": issued["message"],
        "signature": wallet.sign(issued["message"]),
    }


async def sign_in(client: httpx.AsyncClient, wallet: Wallet | None = None) -> dict[str, Any]:
    """The whole flow a client runs; returns the connect-wallet body (token + user)."""
    response = await client.post(
        "/api/auth/connect-wallet", json=await signed_body(client, wallet or Wallet())
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def user_count(resources: Resources) -> int:
    async with resources.sessionmaker() as session:
        count = await session.scalar(text("SELECT count(*) FROM users"))
        return int(count or 0)
