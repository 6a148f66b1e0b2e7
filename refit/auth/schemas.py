from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, EmailStr, Field

from refit.users.schemas import UserRead

# A base58 32-byte key is 32 to 44 characters; a 64-byte signature at most 88. The bounds
# below only keep absurd payloads out: the exact checks are in the service (401/422).
WalletAddress = Field(
    min_length=1, max_length=64, examples=["9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"]
)


class NonceRequest(BaseModel):
    wallet_address: str = WalletAddress


class NonceResponse(BaseModel):
    nonce: str
    message: str = Field(description="The Sign-In With Solana text to sign, as UTF-8 bytes")
    expires_at: dt.datetime
    sign_in_input: dict[str, str] = Field(
        description="The same fields as a wallet-standard SolanaSignInInput, for wallets with "
        "the `signIn` feature (they build the identical text themselves)"
    )


class ConnectWalletRequest(BaseModel):
    wallet_address: str = WalletAddress
    message: str = Field(min_length=1, max_length=4096)
    signature: str = Field(
        min_length=1, max_length=128, description="base58 ed25519 signature of the message"
    )


class SessionResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth token type's name, not a secret)
    expires_in: int
    user: UserRead


class VerifyEmailRequest(BaseModel):
    email: EmailStr = Field(max_length=254)


class VerifyEmailAccepted(BaseModel):
    email: str
    expires_at: dt.datetime


class VerifyEmailConfirm(BaseModel):
    token: str = Field(min_length=1, max_length=128)
