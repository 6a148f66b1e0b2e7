"""Email verification end to end through a real SMTP server (aiosmtpd) and the job worker."""

from __future__ import annotations

import hashlib
import re
import uuid

from sqlalchemy import text

from tests.auth.wallets import bearer, sign_in

LINK = re.compile(r"http://testserver/api/auth/verify-email/confirm\?token=([A-Za-z0-9_\-]+)")


async def _signed_in(client):
    body = await sign_in(client)
    return body, bearer(body["access_token"])


async def _request(client, headers, email):
    return await client.post("/api/auth/verify-email", json={"email": email}, headers=headers)


def _token_from(received) -> str:
    match = LINK.search(received.text())
    assert match, received.text()
    # The HTML part carries the same link.
    assert match.group(0) in received.html()
    return match.group(1)


async def _rows(resources, sql, **params):
    async with resources.sessionmaker() as session:
        return (await session.execute(text(sql), params)).all()


async def test_email_verification_end_to_end(client, resources, run_jobs, smtp):
    user, headers = await _signed_in(client)
    response = await _request(client, headers, "Seller.One@Example.COM")
    assert response.status_code == 202, response.text
    assert response.json()["email"] == "Seller.One@example.com"
    assert smtp.messages == []  # sent by the job, not by the request

    await run_jobs()
    [received] = smtp.messages
    assert received.rcpt_tos == ["Seller.One@example.com"]
    assert received.login == "refit"  # REFIT_SMTP_URL's credentials were used
    assert received.message["Subject"] == "Confirm your email address for ReFit"
    token = _token_from(received)

    # Only the hash is stored; the mail log forgets the token once the mail is out.
    [stored] = await _rows(resources, "SELECT token_hash, used_at FROM email_verification_tokens")
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    [logged] = await _rows(resources, "SELECT context, sent_at, transport FROM outbound_emails")
    assert logged.context == {} and logged.sent_at is not None and logged.transport == "smtp"

    confirmed = await client.post(
        "/api/auth/verify-email/confirm", json={"token": token}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["email"] == "Seller.One@example.com"
    assert confirmed.json()["email_verified"] is True
    me = (await client.get("/api/auth/me", headers=headers)).json()
    assert me["email_verified"] is True and me["id"] == user["user"]["id"]

    # Single use, by the POST and by the link alike.
    reused = await client.post(
        "/api/auth/verify-email/confirm", json={"token": token}, headers=headers
    )
    assert reused.status_code == 409
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["code"] == "email_token_used"
    by_link = await client.get("/api/auth/verify-email/confirm", params={"token": token})
    assert by_link.status_code == 409
    assert by_link.json()["code"] == "email_token_used"


async def test_expired_token_is_refused(client, resources, run_jobs, smtp):
    _, headers = await _signed_in(client)
    assert (await _request(client, headers, "late@example.com")).status_code == 202
    await run_jobs()
    token = _token_from(smtp.messages[0])
    # Its time passes in SQL: the token's expiry is now a second ago.
    async with resources.sessionmaker() as session, session.begin():
        aged = await session.execute(
            text(
                "UPDATE email_verification_tokens SET expires_at = now() - interval '1 second' "
                "WHERE token_hash = :h"
            ),
            {"h": hashlib.sha256(token.encode()).hexdigest()},
        )
        assert aged.rowcount == 1

    response = await client.post(
        "/api/auth/verify-email/confirm", json={"token": token}, headers=headers
    )
    assert response.status_code == 410
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "email_token_expired"
    me = (await client.get("/api/auth/me", headers=headers)).json()
    assert me["email"] is None and me["email_verified"] is False


async def test_the_link_in_the_mail_confirms_from_a_browser(client, run_jobs, smtp):
    _, headers = await _signed_in(client)
    await _request(client, headers, "browser@example.com")
    await run_jobs()
    link = LINK.search(smtp.messages[0].text())
    assert link
    # Opened from the mail: no Authorization header, a browser's Accept.
    page = await client.get(link.group(0), headers={"accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "browser@example.com is now verified" in page.text
    assert (await client.get("/api/auth/me", headers=headers)).json()["email_verified"] is True

    again = await client.get(link.group(0), headers={"accept": "text/html"})
    assert again.status_code == 409
    assert "already been used" in again.text


async def test_unknown_token_is_refused(client):
    _, headers = await _signed_in(client)
    for response in (
        await client.post(
            "/api/auth/verify-email/confirm", json={"token": "nope" * 8}, headers=headers
        ),
        await client.get("/api/auth/verify-email/confirm", params={"token": "nope"}),
    ):
        assert response.status_code == 400
        assert response.json()["code"] == "email_token_invalid"


async def test_another_sellers_token_is_refused_and_stays_usable(client, run_jobs, smtp):
    _, owner = await _signed_in(client)
    _, other = await _signed_in(client)
    await _request(client, owner, "owner@example.com")
    await run_jobs()
    token = _token_from(smtp.messages[0])

    stolen = await client.post(
        "/api/auth/verify-email/confirm", json={"token": token}, headers=other
    )
    assert stolen.status_code == 400
    assert stolen.json()["code"] == "email_token_invalid"
    assert (await client.get("/api/auth/me", headers=other)).json()["email"] is None

    mine = await client.post("/api/auth/verify-email/confirm", json={"token": token}, headers=owner)
    assert mine.status_code == 200


async def test_email_verified_by_another_wallet_is_refused(
    client, resources, run_jobs, smtp, settings
):
    settings.email_resend_interval_seconds = 0  # two sellers, one address, moments apart
    _, first = await _signed_in(client)
    _, second = await _signed_in(client)
    # The second seller asks too, before the first confirms (the race the unique index
    # settles).
    await _request(client, first, "shared@example.com")
    await _request(client, second, "Shared@Example.com")
    await run_jobs()
    tokens = {m.rcpt_tos[0]: _token_from(m) for m in smtp.messages}
    assert len(tokens) == 2

    ok = await client.post(
        "/api/auth/verify-email/confirm",
        json={"token": tokens["shared@example.com"]},
        headers=first,
    )
    assert ok.status_code == 200
    late = await client.post(
        "/api/auth/verify-email/confirm",
        json={"token": tokens["Shared@example.com"]},
        headers=second,
    )
    assert late.status_code == 409
    assert late.json()["code"] == "email_taken"
    assert (await client.get("/api/auth/me", headers=second)).json()["email"] is None
    # The refused confirmation wrote nothing: the second seller's code is still unused.
    unused = await _rows(resources, "SELECT 1 FROM email_verification_tokens WHERE used_at IS NULL")
    assert len(unused) == 1

    # Asking for an address another account has verified is refused up front.
    ask = await _request(client, second, "SHARED@example.com")
    assert ask.status_code == 409
    assert ask.json()["code"] == "email_taken"


async def test_resends_are_throttled(client, settings, run_jobs, smtp):
    settings.email_resend_interval_seconds = 60
    _, headers = await _signed_in(client)
    assert (await _request(client, headers, "a@example.com")).status_code == 202
    again = await _request(client, headers, "b@example.com")
    assert again.status_code == 429
    assert again.json()["code"] == "email_resend_throttled"
    assert 0 < int(again.headers["Retry-After"]) <= 60
    # Another seller cannot flood the same inbox either.
    _, other = await _signed_in(client)
    flood = await _request(client, other, "A@example.com")
    assert flood.status_code == 429
    await run_jobs()
    assert len(smtp.messages) == 1

    settings.email_resend_interval_seconds = 0
    assert (await _request(client, headers, "a@example.com")).status_code == 202


async def test_invalid_email_is_a_validation_error(client):
    _, headers = await _signed_in(client)
    response = await _request(client, headers, "not-an-email")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_confirmed_email_is_already_verified(client, run_jobs, smtp):
    _, headers = await _signed_in(client)
    await _request(client, headers, "done@example.com")
    await run_jobs()
    await client.post(
        "/api/auth/verify-email/confirm",
        json={"token": _token_from(smtp.messages[0])},
        headers=headers,
    )
    response = await _request(client, headers, "DONE@example.com")
    assert response.status_code == 409
    assert response.json()["code"] == "email_already_verified"


async def test_seller_role_cannot_read_the_sign_in_tables(resources, make_user):
    from sqlalchemy.exc import ProgrammingError

    from refit.transactions import act_as_user

    seller = await make_user()
    for table in ("siws_nonces", "email_verification_tokens", "outbound_emails"):
        async with resources.sessionmaker() as session, session.begin():
            await act_as_user(session, seller.id)
            try:
                await session.execute(text(f"SELECT 1 FROM {table} LIMIT 1"))
            except ProgrammingError as exc:
                assert "permission denied" in str(exc)
            else:
                raise AssertionError(f"{table} is readable by the seller's role")
    assert uuid.UUID(str(seller.id))
