"""Every endpoint that needs a seller's token refuses a revoked or an expired one.

The routes are found by walking the app's dependency graphs, so endpoints added later by any
domain are covered without touching this file.
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI

from refit.admin.deps import current_operator
from refit.app import create_app
from refit.auth.deps import current_claims
from refit.auth.tokens import issue_access_token
from refit.events.endpoints import stream_claims
from tests.auth.wallets import bearer, sign_in
from tests.routes import api_routes, call_route, depends_on, routes_depending_on

# Reachable without a seller's token on purpose (the "public" ones of docs/api.md, or a link
# opened from an email). Anything else under /api must depend on current_claims (sellers),
# stream_claims (a seller's event stream: the Bearer token as current_claims reads it, or a
# stream ticket) or current_operator (operators): a new endpoint missing all fails the last
# test here.
PUBLIC = {
    ("POST", "/api/auth/nonce"),
    ("POST", "/api/auth/connect-wallet"),
    ("GET", "/api/auth/verify-email/confirm"),
    ("GET", "/api/catalog"),
    ("POST", "/api/webhooks/shippo"),
    ("POST", "/api/admin/login"),
    # The signed, short-lived URL is the permission (refit/signed_urls.py).
    ("GET", "/api/evidence/{photo_id}"),
}


def protected_routes(app: FastAPI) -> list[tuple[str, str]]:
    return routes_depending_on(app, current_claims) + routes_depending_on(app, stream_claims)


def _app(resources) -> FastAPI:
    # The same routes as the app behind `client`, which the tests call.
    return create_app(resources.settings, resources=resources)


async def test_revoked_and_expired_tokens_get_401_on_every_protected_endpoint(
    client, resources, settings, make_user
):
    routes = protected_routes(_app(resources))
    assert {
        ("GET", "/api/auth/me"),
        ("POST", "/api/auth/sign-out"),
        ("POST", "/api/auth/verify-email"),
        ("POST", "/api/auth/verify-email/confirm"),
    } <= set(routes)

    signed_in = await sign_in(client)
    token = signed_in["access_token"]
    user_id = uuid.UUID(signed_in["user"]["id"])
    expired = issue_access_token(
        settings.model_copy(update={"access_token_ttl_seconds": -60}), user_id
    ).token

    for method, path in routes:
        # A live token of a fresh seller is let through (whatever the endpoint then says about
        # an empty body or an unknown id): the 401s below come from the token alone.
        fresh = await make_user()
        let_in = await call_route(client, method, path, fresh.headers)
        assert let_in is None or let_in.status_code != 401, (method, path, let_in.text)

        response = await call_route(client, method, path, bearer(expired))
        assert response is not None and response.status_code == 401, (method, path)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "token_expired", (method, path)

    assert (await client.get("/api/auth/me", headers=bearer(token))).status_code == 200
    sign_out = await client.post("/api/auth/sign-out", headers=bearer(token))
    assert sign_out.status_code == 204

    for method, path in routes:
        response = await call_route(client, method, path, bearer(token))
        assert response is not None and response.status_code == 401, (method, path)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "token_revoked", (method, path)


async def test_no_token_or_a_forged_one_gets_401(client, settings):
    forged = issue_access_token(
        settings.model_copy(update={"jwt_secret": "another-secret-" + "x" * 40}), uuid.uuid4()
    ).token
    for headers, code in [({}, "no_token"), (bearer(forged), "invalid_token")]:
        response = await client.get("/api/auth/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == code


async def test_every_api_endpoint_is_protected_unless_public_on_purpose(resources):
    unguarded = {
        (method, path)
        for method, path, dependant in api_routes(_app(resources))
        if path.startswith("/api/")
        and not depends_on(dependant, current_claims)
        and not depends_on(dependant, stream_claims)
        and not depends_on(dependant, current_operator)
    }
    assert unguarded <= PUBLIC, sorted(unguarded - PUBLIC)


async def test_a_live_token_gets_503_on_every_protected_endpoint_while_redis_is_down(
    client, resources, make_user, open_client_without
):
    """Fail closed: when Redis cannot say whether a token was revoked, a live token is refused
    with 503 auth_unavailable: neither served nor mistaken for a bad token (401)."""
    routes = protected_routes(_app(resources))
    assert ("GET", "/api/auth/me") in routes
    seller = await make_user()
    assert (await client.get("/api/auth/me", headers=seller.headers)).status_code == 200
    async with open_client_without("redis") as http:
        for method, path in routes:
            response = await call_route(http, method, path, seller.headers)
            assert response is not None and response.status_code == 503, (method, path)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "auth_unavailable", (method, path)
