"""Operators' access to /api/admin: a token from POST /api/admin/login, checked against the
operator's row on every request; roles; and the two kinds of token kept apart."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select, text, update

from refit.admin.deps import current_admin, current_operator
from refit.admin.tokens import issue_operator_token
from refit.app import create_app
from refit.models import IdempotencyKey, Operator, Order, OrderStatus
from tests.admin.helpers import bearer_for, make_operator, operator_headers
from tests.routes import api_routes, call_route, routes_depending_on

PASSWORD = "correct horse battery staple"


def _assert_refused(response, why) -> None:
    assert response is not None and response.status_code == 401, (why, response)
    assert response.headers["content-type"] == "application/problem+json", why
    assert response.json()["code"] == "operator_unauthorized", why
    assert response.headers["www-authenticate"] == "Bearer", why


def _bearer(settings, operator) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_operator_token(settings, operator).token}"}


async def _login(client, username: str, password: str):
    return await client.post("/api/admin/login", json={"username": username, "password": password})


async def _order(resources, seller, status=OrderStatus.PROCESSING_SHIPMENT) -> Order:
    """An order waiting for its label after the label job gave up (inserted as the service)."""
    async with resources.sessionmaker() as session, session.begin():
        order = Order(
            user_id=seller.id,
            status=status,
            device_brand="Apple",
            device_model="iPhone 13",
            device_condition="good",
            quoted_price_usd=Decimal("412.50"),
            quoted_price_sol=Decimal("2.7500"),
            label_error="UPS API did not respond",
        )
        session.add(order)
    return order


async def test_every_admin_endpoint_refuses_anything_but_a_live_operator_token(
    client, resources, settings, make_user
):
    app = create_app(settings, resources=resources)
    routes = routes_depending_on(app, current_operator)
    # Everything under /api/admin is the operators', but the sign-in itself.
    admin_paths = {(m, p) for m, p, _ in api_routes(app) if p.startswith("/api/admin/")}
    assert admin_paths - set(routes) == {("POST", "/api/admin/login")}
    assert ("GET", "/api/admin/orders/{order_id}/label-status") in routes
    admin_only = set(routes_depending_on(app, current_admin))
    assert ("POST", "/api/admin/orders/{order_id}/retry-label") in admin_only

    seller = await make_user()
    operator = await make_operator(resources, "admin")
    disabled = await make_operator(resources, "admin")
    disabled_headers = bearer_for(resources, disabled)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Operator).where(Operator.id == disabled.id).values(disabled_at=func.now())
        )
    other_secret = settings.model_copy(update={"jwt_secret": "another-secret-" + "x" * 40})
    expired = settings.model_copy(update={"operator_token_ttl_seconds": -60})
    ghost = Operator(id=uuid.uuid4(), username="ghost", role="admin")
    refused = {
        "no credentials": {},
        "a seller's token": seller.headers,
        "HTTP Basic": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "a forged operator token": _bearer(other_secret, operator),
        "an expired operator token": _bearer(expired, operator),
        "a disabled operator's token": disabled_headers,
        "the token of an operator that does not exist": bearer_for(resources, ghost),
    }
    inspector = await operator_headers(resources, "inspector")
    admin = bearer_for(resources, operator)
    for route in routes:
        for why, headers in refused.items():
            _assert_refused(await call_route(client, *route, headers), (route, why))
        # A live token is let through (to whatever the endpoint says of a random id).
        let_in = await call_route(client, *route, admin)
        assert let_in is not None and let_in.status_code not in (401, 403), (route, let_in.text)
        as_inspector = await call_route(client, *route, inspector)
        assert as_inspector is not None
        if route in admin_only:
            assert as_inspector.status_code == 403, (route, as_inspector.text)
            assert as_inspector.json()["code"] == "operator_forbidden"
        else:
            assert as_inspector.status_code not in (401, 403), (route, as_inspector.text)


async def test_login_gives_a_token_that_works_on_admin_endpoints(client, resources, make_user):
    operator = await make_operator(resources, "inspector", "Ada.Ops", PASSWORD)
    assert operator.username == "ada.ops"  # stored lower-cased
    seller = await make_user()
    order = await _order(resources, seller)

    response = await _login(client, "  ADA.ops ", PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == resources.settings.operator_token_ttl_seconds == 8 * 3600
    assert body["operator"] == {"id": str(operator.id), "username": "ada.ops", "role": "inspector"}

    headers = {"Authorization": f"Bearer {body['access_token']}"}
    status = await client.get(f"/api/admin/orders/{order.id}/label-status", headers=headers)
    assert status.status_code == 200, status.text
    assert status.json()["label_error"] == "UPS API did not respond"
    async with resources.sessionmaker() as session:
        assert (await session.get(Operator, operator.id)).last_login_at is not None


async def test_unknown_user_wrong_password_and_disabled_get_the_same_401(client, resources):
    await make_operator(resources, "admin", "ada", PASSWORD)
    gone = await make_operator(resources, "admin", "grace", PASSWORD)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Operator).where(Operator.id == gone.id).values(disabled_at=func.now())
        )

    answers = [
        await _login(client, "ada", PASSWORD + "!"),
        await _login(client, "nobody", PASSWORD),
        await _login(client, "grace", PASSWORD),
        await _login(client, "not a username at all", PASSWORD),
    ]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json() == answers[0].json()
        assert answer.json()["code"] == "invalid_credentials"
    assert (await _login(client, "ada", PASSWORD)).status_code == 200


async def test_a_hash_with_old_parameters_is_replaced_at_sign_in(client, resources):
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    operator = await make_operator(resources, "admin", "ada", PASSWORD)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Operator)
            .where(Operator.id == operator.id)
            .values(password_hash=weak.hash(PASSWORD))
        )
    assert (await _login(client, "ada", PASSWORD)).status_code == 200
    async with resources.sessionmaker() as session:
        stored = (await session.get(Operator, operator.id)).password_hash
    assert not PasswordHasher().check_needs_rehash(stored)
    assert PasswordHasher().verify(stored, PASSWORD)
    assert (await _login(client, "ada", PASSWORD)).status_code == 200


async def test_failed_logins_throttle_the_username_even_with_the_right_password(
    client, resources, settings
):
    settings.rate_limit_operator_login_per_username = "3/15minutes"
    settings.rate_limit_operator_login_per_ip = "10/15minutes"
    await make_operator(resources, "admin", "ada", PASSWORD)
    await make_operator(resources, "admin", "bob", PASSWORD)

    # Successes are not counted.
    for _ in range(4):
        assert (await _login(client, "ada", PASSWORD)).status_code == 200
    for _ in range(3):
        assert (await _login(client, "ada", "wrong password!!")).status_code == 401
    throttled = await _login(client, "ADA", PASSWORD)
    assert throttled.status_code == 429, throttled.text
    assert throttled.headers["content-type"] == "application/problem+json"
    assert throttled.json()["code"] == "rate_limited"
    assert 0 < int(throttled.headers["retry-after"]) <= 15 * 60
    # Refused before anything is checked: still throttled, still not counted as more failures.
    assert (await _login(client, "ada", "wrong password!!")).status_code == 429
    # Another operator from the same address is not (three failures are under its limit).
    assert (await _login(client, "bob", PASSWORD)).status_code == 200


async def test_failed_logins_throttle_the_address_whatever_the_username(
    client, resources, settings
):
    settings.rate_limit_operator_login_per_username = "10/15minutes"
    settings.rate_limit_operator_login_per_ip = "3/15minutes"
    await make_operator(resources, "admin", "ada", PASSWORD)
    for name in ("carol", "dave", "erin"):
        assert (await _login(client, name, PASSWORD)).status_code == 401
    throttled = await _login(client, "ada", PASSWORD)
    assert throttled.status_code == 429, throttled.text
    assert int(throttled.headers["retry-after"]) > 0


async def test_a_throttle_turned_off_lets_failures_through_without_a_crash(
    client, resources, settings
):
    settings.rate_limit_operator_login_per_username = ""  # off
    settings.rate_limit_operator_login_per_ip = "3/15minutes"
    await make_operator(resources, "admin", "ada", PASSWORD)
    assert (await _login(client, "ada", "wrong password")).status_code == 401
    assert (await _login(client, "ada", PASSWORD)).status_code == 200


async def test_the_two_kinds_of_token_are_refused_on_each_others_endpoints(
    client, resources, make_user
):
    seller = await make_user()
    order = await _order(resources, seller)
    # A seller's token on /api/admin.
    refused = await client.get(f"/api/admin/orders/{order.id}/label-status", headers=seller.headers)
    _assert_refused(refused, "a seller's token")

    # An operator's token on the sellers' endpoints.
    operator = await operator_headers(resources, "admin")
    for path in ("/api/orders", f"/api/orders/{order.id}", "/api/auth/me"):
        response = await client.get(path, headers=operator)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["code"] == "invalid_token", path
    # Both are let in where they belong.
    assert (await client.get("/api/orders", headers=seller.headers)).status_code == 200
    assert (
        await client.get(f"/api/admin/orders/{order.id}/label-status", headers=operator)
    ).status_code == 200


async def test_an_inspector_cannot_retry_a_label_and_nothing_changes(client, resources, make_user):
    seller = await make_user()
    order = await _order(resources, seller)
    inspector = await operator_headers(resources, "inspector")

    async def state():
        async with resources.sessionmaker() as session:
            row = await session.get(Order, order.id)
            jobs = await session.scalar(
                text(
                    "SELECT count(*) FROM procrastinate_jobs WHERE args ->> 'order_id' = :id"
                ).bindparams(id=str(order.id))
            )
            keys = await session.scalar(select(func.count()).select_from(IdempotencyKey))
            return (row.status, row.label_error, row.updated_at, jobs, keys)

    before = await state()
    refused = await client.post(
        f"/api/admin/orders/{order.id}/retry-label",
        headers={**inspector, "Idempotency-Key": "retry-1"},
    )
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "operator_forbidden"
    assert await state() == before
    assert before[3] == 0

    # An admin may: the order's error is cleared and the label job queued.
    admin = await operator_headers(resources, "admin")
    retried = await client.post(f"/api/admin/orders/{order.id}/retry-label", headers=admin)
    assert retried.status_code == 202, retried.text
    after = await state()
    assert after[1] is None and after[3] == 1


async def test_a_disabled_operators_token_stops_working_at_once(client, resources, make_user):
    seller = await make_user()
    order = await _order(resources, seller)
    operator = await make_operator(resources, "admin")
    headers = bearer_for(resources, operator)
    path = f"/api/admin/orders/{order.id}/label-status"
    assert (await client.get(path, headers=headers)).status_code == 200
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Operator).where(Operator.id == operator.id).values(disabled_at=func.now())
        )
    _assert_refused(await client.get(path, headers=headers), "disabled")


def test_operator_tokens_carry_their_own_audience(settings):
    import jwt

    operator = Operator(id=uuid.uuid4(), username="ada", role="inspector")
    token = issue_operator_token(settings, operator).token
    claims = jwt.decode(
        token, settings.jwt_secret, algorithms=[settings.jwt_algorithm], audience="refit-operator"
    )
    assert claims["sub"] == str(operator.id) and claims["role"] == "inspector"
    assert claims["exp"] - claims["iat"] == settings.operator_token_ttl_seconds
