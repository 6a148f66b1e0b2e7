"""Sign-In With Solana with real ed25519 keypairs: what opens a session and what is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import base58
import httpx
import pytest
from sqlalchemy import text

from refit.app import create_app
from tests.auth.wallets import (
    Wallet,
    bearer,
    get_nonce,
    iso,
    message_text,
    sign_in,
    signed_body,
    user_count,
)

PROBLEM = "application/problem+json"


async def _connect(client, body):
    return await client.post("/api/auth/connect-wallet", json=body)


def _assert_refused(response, code):
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == 401


async def _nonce_used_at(resources, nonce):
    async with resources.sessionmaker() as session:
        return await session.scalar(
            text("SELECT used_at FROM siws_nonces WHERE nonce = :n"), {"n": nonce}
        )


async def test_valid_sign_in_creates_the_user_and_opens_a_session(client, resources, settings):
    wallet = Wallet()
    issued = await get_nonce(client, wallet)
    # A wallet with the `signIn` feature renders the same fields to the identical text.
    assert message_text(issued["sign_in_input"]) == issued["message"]
    assert issued["message"].startswith(
        f"testserver wants you to sign in with your Solana account:\n{wallet.address}\n\n"
    )

    response = await _connect(
        client,
        {
            "wallet_address": wallet.address,
            "message": issued["message"],
            "signature": wallet.sign(issued["message"]),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_ttl_seconds
    assert body["user"]["wallet_address"] == wallet.address
    assert body["user"]["email"] is None and body["user"]["email_verified"] is False
    assert await user_count(resources) == 1
    assert await _nonce_used_at(resources, issued["nonce"]) is not None

    me = await client.get("/api/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == body["user"]


async def test_second_sign_in_reuses_the_user(client, resources):
    wallet = Wallet()
    first = await sign_in(client, wallet)
    second = await sign_in(client, wallet)
    assert first["user"]["id"] == second["user"]["id"]
    assert first["access_token"] != second["access_token"]
    assert await user_count(resources) == 1


async def test_replayed_nonce_is_refused(client, resources):
    body = await signed_body(client, Wallet())
    assert (await _connect(client, body)).status_code == 200
    _assert_refused(await _connect(client, body), "nonce_used")
    assert await user_count(resources) == 1  # only the first sign-in's user


async def test_nonce_of_another_wallet_is_refused_and_stays_usable(client, resources):
    owner, thief = Wallet(), Wallet()
    issued = await get_nonce(client, owner)
    fields = {**issued["sign_in_input"], "address": thief.address}
    message = message_text(fields)
    response = await _connect(
        client,
        {"wallet_address": thief.address, "message": message, "signature": thief.sign(message)},
    )
    _assert_refused(response, "invalid_nonce")
    assert await user_count(resources) == 0
    # The owner's nonce was not burned by the attempt.
    assert await _nonce_used_at(resources, issued["nonce"]) is None
    owner_body = {
        "wallet_address": owner.address,
        "message": issued["message"],
        "signature": owner.sign(issued["message"]),
    }
    assert (await _connect(client, owner_body)).status_code == 200


async def test_tampered_message_is_refused(client, resources):
    wallet = Wallet()
    body = await signed_body(client, wallet)
    tampered = body["message"].replace("Sign in to ReFit", "Sign in to ReFit and pay 100 SOL")
    assert tampered != body["message"]
    _assert_refused(await _connect(client, {**body, "message": tampered}), "invalid_signature")
    assert await user_count(resources) == 0


async def _signed_variant(client, wallet, **changes):
    """A message the wallet itself built from our nonce with some fields changed, properly
    signed by the wallet: only the server's field checks can refuse it."""
    issued = await get_nonce(client, wallet)
    fields = {**issued["sign_in_input"], **changes}
    message = message_text(fields)
    return issued, {
        "wallet_address": wallet.address,
        "message": message,
        "signature": wallet.sign(message),
    }


async def test_wrong_domain_is_refused_without_burning_the_nonce(client, resources):
    wallet = Wallet()
    issued, body = await _signed_variant(client, wallet, domain="refit.evil.example")
    _assert_refused(await _connect(client, body), "domain_mismatch")
    assert await user_count(resources) == 0
    assert await _nonce_used_at(resources, issued["nonce"]) is None


async def test_expired_message_is_refused(client, resources):
    now = dt.datetime.now(dt.UTC)
    _, body = await _signed_variant(
        client,
        Wallet(),
        issuedAt=iso(now - dt.timedelta(minutes=3)),
        expirationTime=iso(now - dt.timedelta(seconds=5)),
    )
    _assert_refused(await _connect(client, body), "message_expired")
    assert await user_count(resources) == 0


async def test_expired_nonce_is_refused(client, resources):
    wallet = Wallet()
    issued = await get_nonce(client, wallet)
    # Its time passes in SQL: the nonce's expiry is now a second ago.
    async with resources.sessionmaker() as session, session.begin():
        aged = await session.execute(
            text(
                "UPDATE siws_nonces SET expires_at = now() - interval '1 second' WHERE nonce = :n"
            ),
            {"n": issued["nonce"]},
        )
        assert aged.rowcount == 1
    # The wallet's message still claims a later expiry: the database's nonce expiry decides.
    fields = {
        **issued["sign_in_input"],
        "expirationTime": iso(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)),
    }
    message = message_text(fields)
    body = {"wallet_address": wallet.address, "message": message, "signature": wallet.sign(message)}
    _assert_refused(await _connect(client, body), "nonce_expired")
    assert await user_count(resources) == 0


async def test_another_keys_signature_is_refused(client, resources):
    wallet, other = Wallet(), Wallet()
    body = await signed_body(client, wallet)
    body["signature"] = other.sign(body["message"])
    _assert_refused(await _connect(client, body), "invalid_signature")
    assert await user_count(resources) == 0


@pytest.mark.parametrize(
    "signature",
    [
        "0OIl-not-base58",  # characters outside the base58 alphabet
        base58.b58encode(b"\x01" * 10).decode(),  # base58, but not 64 bytes
        base58.b58encode(b"\x01" * 65).decode(),
        "",
    ],
)
async def test_malformed_signature_is_refused(client, resources, signature):
    body = await signed_body(client, Wallet())
    body["signature"] = signature
    response = await _connect(client, body)
    if signature == "":
        # An empty field is a validation error of the request itself.
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM
    else:
        _assert_refused(response, "invalid_signature")
    assert await user_count(resources) == 0


async def test_garbage_signature_does_not_burn_the_sellers_nonce(client, resources):
    wallet = Wallet()
    body = await signed_body(client, wallet)
    _assert_refused(
        await _connect(client, {**body, "signature": Wallet().sign("junk")}), "invalid_signature"
    )
    assert (await _connect(client, body)).status_code == 200


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"uri": "https://refit.evil.example/login"}, "uri_mismatch"),
        ({"uri": "http://testserver:abc"}, "malformed_message"),
        ({"uri": "http://[::1"}, "malformed_message"),
        ({"chainId": "devnet"}, "chain_mismatch"),
        ({"version": "2"}, "unsupported_version"),
        ({"issuedAt": "2020-01-01T00:00:00.000Z"}, "issued_at_out_of_range"),
        ({"notBefore": "2099-01-01T00:00:00.000Z"}, "message_not_yet_valid"),
        ({"expirationTime": "next tuesday"}, "malformed_message"),
        ({"nonce": "NotIssuedByUs123"}, "invalid_nonce"),
    ],
)
async def test_each_field_is_checked(client, resources, changes, code):
    _, body = await _signed_variant(client, Wallet(), **changes)
    _assert_refused(await _connect(client, body), code)
    assert await user_count(resources) == 0


async def test_nul_character_in_a_signed_message_is_a_400_not_a_crash(client, resources):
    _, body = await _signed_variant(client, Wallet(), nonce="Nul\u0000Nonce1234")
    response = await _connect(client, body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_data"
    assert await user_count(resources) == 0


async def test_wallet_built_message_with_other_optional_fields_is_accepted(client):
    # No statement, a request id and resources: still the same sign-in, signed as built.
    _, body = await _signed_variant(
        client,
        Wallet(),
        statement="",
        requestId="req-42",
        resources=["https://testserver/terms", "ipfs://bafy"],
    )
    assert "Resources:\n- https://testserver/terms\n- ipfs://bafy" in body["message"]
    assert (await _connect(client, body)).status_code == 200


async def test_solana_prefixed_chain_id_is_accepted(client):
    _, body = await _signed_variant(client, Wallet(), chainId="solana:mainnet")
    assert (await _connect(client, body)).status_code == 200


async def test_message_naming_another_wallet_is_refused(client, resources):
    signer, named = Wallet(), Wallet()
    _, body = await _signed_variant(client, signer, address=named.address)
    _assert_refused(await _connect(client, body), "address_mismatch")
    assert await user_count(resources) == 0


@pytest.mark.parametrize(
    "message",
    ["hello", "testserver wants you to sign in with your Solana account:", "Nonce: abc\n"],
)
async def test_signed_non_siws_message_is_refused(client, resources, message):
    wallet = Wallet()
    body = {"wallet_address": wallet.address, "message": message, "signature": wallet.sign(message)}
    _assert_refused(await _connect(client, body), "malformed_message")
    assert await user_count(resources) == 0


async def test_message_that_is_not_unicode_is_refused_as_unstorable(client, resources):
    wallet = Wallet()
    # JSON may spell a lone UTF-16 surrogate, which no UTF-8 text contains: refused before
    # parsing, as every body's (refit/inputs.py).
    body = {"wallet_address": wallet.address, "message": "@@", "signature": wallet.sign("x")}
    raw = json.dumps(body).replace("@@", "\\ud800 lone surrogate")
    response = await client.post(
        "/api/auth/connect-wallet", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "invalid_data"
    assert await user_count(resources) == 0


@pytest.mark.parametrize(
    "address",
    ["not an address", base58.b58encode(b"\x02" * 31).decode(), "1" * 44],
)
async def test_malformed_wallet_address(client, resources, address):
    nonce = await client.post("/api/auth/nonce", json={"wallet_address": address})
    assert nonce.status_code == 422
    assert nonce.json()["code"] == "invalid_wallet_address"
    wallet = Wallet()
    body = await signed_body(client, wallet)
    _assert_refused(await _connect(client, {**body, "wallet_address": address}), "invalid_address")
    assert await user_count(resources) == 0


async def test_two_first_sign_ins_of_one_wallet_at_once_make_one_user(client, resources):
    wallet = Wallet()
    bodies = [await signed_body(client, wallet) for _ in range(2)]
    responses = await asyncio.gather(*(_connect(client, body) for body in bodies))
    assert [r.status_code for r in responses] == [200, 200]
    assert responses[0].json()["user"]["id"] == responses[1].json()["user"]["id"]
    assert await user_count(resources) == 1


async def test_nonce_is_rate_limited_per_wallet_and_per_ip(client, settings):
    settings.rate_limit_nonce_per_wallet = "2/minute"
    settings.rate_limit_nonce_per_ip = "4/minute"
    wallet = Wallet()
    for _ in range(2):
        await get_nonce(client, wallet)
    limited = await client.post("/api/auth/nonce", json={"wallet_address": wallet.address})
    assert limited.status_code == 429
    assert limited.headers["content-type"] == PROBLEM
    assert limited.json()["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit-Limit"] == "2"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert int(limited.headers["RateLimit-Reset"]) > 0

    # Another wallet from the same address still gets one, until the per-IP limit (4 hits,
    # the refused one included) is reached.
    await get_nonce(client, Wallet())
    by_ip = await client.post("/api/auth/nonce", json={"wallet_address": Wallet().address})
    assert by_ip.status_code == 429
    assert by_ip.headers["RateLimit-Limit"] == "4"


async def test_a_stranger_cannot_lock_a_wallet_out_of_sign_in(client, resources, settings):
    """The stranger uses up the nonces of the victim's wallet from their own address; the
    victim, from theirs, still gets a nonce and signs in."""
    settings.rate_limit_nonce_per_wallet = "2/minute"
    victim = Wallet()
    app = create_app(resources.settings, resources=resources)
    stranger_at = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=stranger_at, base_url="http://testserver") as stranger:
        answers = [
            (await stranger.post("/api/auth/nonce", json={"wallet_address": victim.address}))
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    body = await signed_body(client, victim)
    signed_in = await _connect(client, body)
    assert signed_in.status_code == 200, signed_in.text
