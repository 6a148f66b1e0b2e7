"""Every error the app produces is RFC 9457 problem+json."""

import pytest
from pydantic import BaseModel

from refit.app import create_app
from refit.auth.deps import CurrentClaims
from refit.errors import PROBLEM_JSON


def assert_problem(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    return body


async def test_unknown_path_is_404_problem(client):
    assert_problem(await client.get("/api/nothing-here"), 404, "not_found")


async def test_wrong_method_is_405_problem(client):
    assert_problem(await client.delete("/healthz"), 405, "method_not_allowed")


def _app_with_protected_route(resources):
    app = create_app(resources.settings, resources=resources)

    @app.get("/protected")
    async def protected(claims: CurrentClaims) -> dict[str, str]:
        return {"user": str(claims.user_id)}

    return app


async def test_missing_or_bad_token_is_401_problem(resources, make_user, open_client):
    async with open_client(_app_with_protected_route(resources)) as http:
        body = assert_problem(await http.get("/protected"), 401, "no_token")
        assert "Bearer" in body["detail"]
        bad = await http.get("/protected", headers={"Authorization": "Bearer not-a-jwt"})
        assert_problem(bad, 401, "invalid_token")
        assert bad.headers["www-authenticate"] == "Bearer"
        seller = await make_user()
        ok = await http.get("/protected", headers=seller.headers)
    assert ok.json() == {"user": str(seller.id)}


@pytest.mark.allow_500
async def test_unexpected_crash_is_500_problem_without_internals(resources, open_client):
    app = create_app(resources.settings, resources=resources)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    async with open_client(app) as http:
        response = await http.get("/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "secret" not in response.text
    assert body["detail"]


async def test_malformed_json_is_400_and_invalid_field_is_422(resources, open_client):
    app = create_app(resources.settings, resources=resources)

    class Body(BaseModel):
        count: int

    @app.post("/echo")
    async def echo(body: Body) -> Body:
        return body

    async with open_client(app) as http:
        malformed = await http.post(
            "/echo", content=b"{not json", headers={"content-type": "application/json"}
        )
        invalid = await http.post("/echo", json={"count": "many"})
    assert_problem(malformed, 400, "malformed_json")
    body = assert_problem(invalid, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "count"]


async def test_a_body_over_the_limit_is_413_problem_json(client, resources):
    """A 2 MB body to a public endpoint is refused as it streams in, and nothing breaks."""
    body = b'{"wallet_address": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await client.post(
        "/api/auth/nonce", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "payload_too_large"
    assert (await client.get("/healthz")).status_code == 200


async def test_a_chunked_body_over_the_limit_is_413_too(client, resources):
    async def chunks():
        for _ in range(3):
            yield b"x" * (1024 * 1024)

    response = await client.post(
        "/api/auth/nonce", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
