"""Every /api/admin endpoint asks for the operator's password (HTTP Basic): none, a wrong one
or a seller's token is 401 operator_unauthorized before anything is read or written."""

from __future__ import annotations

import base64

from refit.admin.deps import current_operator
from refit.app import create_app
from tests.routes import api_routes, call_route, routes_depending_on

PASSWORD = "the-operators-password-for-tests"


def _basic(username: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def _assert_refused(response, route) -> None:
    assert response is not None and response.status_code == 401, (route, response)
    assert response.headers["content-type"] == "application/problem+json", route
    assert response.json()["code"] == "operator_unauthorized", route
    assert response.headers["www-authenticate"] == 'Basic realm="ReFit operators"', route


async def test_every_admin_endpoint_refuses_missing_or_wrong_operator_credentials(
    client, resources, settings, make_user
):
    settings.admin_password = PASSWORD
    app = create_app(settings, resources=resources)
    routes = routes_depending_on(app, current_operator)
    # Everything under /api/admin is the operators', and only that.
    assert {(m, p) for m, p, _ in api_routes(app) if p.startswith("/api/admin/")} == set(routes)
    assert ("POST", "/api/admin/orders/{order_id}/retry-label") in routes
    seller = await make_user()
    refused = {
        "no credentials": {},
        "a wrong password": _basic("ada", PASSWORD + "x"),
        "an empty password": _basic("ada", ""),
        "a seller's token": seller.headers,
    }
    for route in routes:
        for why, headers in refused.items():
            _assert_refused(await call_route(client, *route, headers), (route, why))
        # The right password is let through (to whatever the endpoint says of a random id).
        let_in = await call_route(client, *route, _basic("ada", PASSWORD))
        assert let_in is not None and let_in.status_code != 401, (route, let_in.text)
