"""The confirmation link opened from the mail: a browser lands on a small HTML page (verified,
or why not), an API client keeps its JSON; the choice is the Accept header's."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import text

from refit.auth.link_page import prefers_html
from tests.auth.wallets import bearer, sign_in

LINK = re.compile(r"http://testserver/api/auth/verify-email/confirm\?token=([A-Za-z0-9_\-]+)")
CONFIRM = "/api/auth/verify-email/confirm"
# What Firefox and Chrome send when a link is opened.
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def _link_for(client, run_jobs, smtp, email: str) -> tuple[str, dict[str, str]]:
    """A signed-in seller who asked to verify `email`: the mailed link's token and their
    headers."""
    headers = bearer((await sign_in(client))["access_token"])
    sent = await client.post("/api/auth/verify-email", json={"email": email}, headers=headers)
    assert sent.status_code == 202, sent.text
    await run_jobs()
    match = LINK.search(smtp.messages[-1].text())
    assert match
    return match.group(1), headers


async def test_a_browser_gets_a_page_with_the_address_escaped(client, run_jobs, smtp):
    # ' and & are allowed in an address's local part, and mean something in HTML.
    token, headers = await _link_for(client, run_jobs, smtp, "o'neil&co@example.com")

    page = await client.get(CONFIRM, params={"token": token}, headers={"accept": BROWSER})

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"  # the URL holds the token
    assert "Your email is verified" in page.text
    assert "o&#x27;neil&amp;co@example.com is now verified" in page.text
    assert "o'neil&co" not in page.text
    assert "<script" not in page.text
    me = (await client.get("/api/auth/me", headers=headers)).json()
    assert me["email"] == "o'neil&co@example.com" and me["email_verified"] is True


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html;q=0.5, */*"])
async def test_an_api_client_keeps_the_json_answer(client, run_jobs, smtp, accept):
    token, _ = await _link_for(client, run_jobs, smtp, "api@example.com")
    request = client.build_request("GET", CONFIRM, params={"token": token})
    if accept is None:
        del request.headers["accept"]  # httpx sends */* unless told otherwise
    else:
        request.headers["accept"] = accept

    answer = await client.send(request)

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["email"] == "api@example.com"
    assert answer.json()["email_verified"] is True


async def test_an_expired_link_says_so_to_a_browser_and_to_an_api_client(
    client, resources, run_jobs, smtp
):
    token, headers = await _link_for(client, run_jobs, smtp, "late@example.com")
    async with resources.sessionmaker() as session, session.begin():
        aged = await session.execute(
            text(
                "UPDATE email_verification_tokens SET expires_at = now() - interval '1 second'"
                " WHERE token_hash = :h"
            ),
            {"h": hashlib.sha256(token.encode()).hexdigest()},
        )
        assert aged.rowcount == 1

    page = await client.get(CONFIRM, params={"token": token}, headers={"accept": BROWSER})
    assert page.status_code == 410
    assert page.headers["content-type"].startswith("text/html")
    assert "This link has expired" in page.text
    assert "Ask for a new confirmation email" in page.text

    problem = await client.get(CONFIRM, params={"token": token})
    assert problem.status_code == 410
    assert problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["code"] == "email_token_expired"
    me = (await client.get("/api/auth/me", headers=headers)).json()
    assert me["email_verified"] is False


@pytest.mark.parametrize(
    "params",
    [{"token": "not-a-code-we-sent"}, {}, {"token": ""}, {"token": "x" * 500}],
    ids=["unknown", "missing", "empty", "too-long"],
)
async def test_a_link_that_is_not_valid_gets_a_clear_page(client, params):
    page = await client.get(CONFIRM, params=params, headers={"accept": BROWSER})
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert "This link is not valid" in page.text

    problem = await client.get(CONFIRM, params=params)
    assert problem.status_code == 400
    assert problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["code"] == "email_token_invalid"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER, True),
        ("text/html", True),
        ("text/*", True),
        ("application/json, text/html;q=0.9", False),
        ("text/html, application/json", False),  # a tie: the API's own answer
        ("text/html;q=0, */*", False),
        ("*/*", False),
        ("", False),
        (None, False),
        ("text/html;q=bogus", False),
    ],
)
def test_accept_ranks_html_only_above_json(accept, html):
    assert prefers_html(accept) is html
