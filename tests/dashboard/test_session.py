"""Signing in to the dashboard: the operators' accounts and throttle, a cookie session,
CSRF on every form, and pages (not problem+json) when something is refused."""

from __future__ import annotations

import secrets

from refit.dashboard.session import COOKIE
from tests.admin.helpers import make_operator
from tests.dashboard.helpers import csrf_of, sign_in, signed_in_operator


async def test_the_dashboard_sends_a_stranger_to_its_sign_in_form(client):
    response = await client.get("/admin/payouts")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=/admin/payouts"
    form = await client.get("/admin/login?next=/admin/payouts")
    assert form.status_code == 200 and "text/html" in form.headers["content-type"]
    assert 'name="next" value="/admin/payouts"' in form.text
    # A write without a session is refused as a page, not as problem+json.
    refused = await client.post("/admin/orders/00000000-0000-0000-0000-000000000000/receive")
    assert refused.status_code == 401 and "text/html" in refused.headers["content-type"]


async def test_an_operator_signs_in_with_a_secure_cookie_and_out_again(client, resources):
    password = secrets.token_urlsafe(16)
    operator = await make_operator(resources, "inspector", password=password)
    response = await sign_in(client, operator.username.upper(), password)
    assert response.status_code == 303 and response.headers["location"] == "/admin/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/admin" in cookie
    page = await client.get("/admin/")
    assert page.status_code == 200
    assert operator.username in page.text

    # Signing out ends the session on the server too: the old cookie is refused afterwards.
    old = client.cookies.get(COOKIE)
    out = await client.post("/admin/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    client.cookies.set(COOKIE, old, path="/admin")
    again = await client.get("/admin/")
    assert again.status_code == 303 and again.headers["location"].startswith("/admin/login")
    # Recorded in PostgreSQL: still refused after Redis loses this test's keys.
    async for key in resources.redis.scan_iter(match=f"{resources.settings.redis_key_prefix}*"):
        await resources.redis.delete(key)
    still = await client.get("/admin/")
    assert still.status_code == 303 and still.headers["location"].startswith("/admin/login")


async def test_wrong_passwords_are_throttled_like_the_api_login(client, resources, settings):
    settings.rate_limit_operator_login_per_username = "2/15minutes"
    password = secrets.token_urlsafe(16)
    operator = await make_operator(resources, "admin", password=password)
    for _ in range(2):
        wrong = await sign_in(client, operator.username, "not-the-password")
        assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    # The same counters as POST /api/admin/login: even the right password waits now, and
    # so does the API.
    refused = await sign_in(client, operator.username, password)
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    api = await client.post(
        "/api/admin/login", json={"username": operator.username, "password": password}
    )
    assert api.status_code == 429


async def test_a_sign_in_form_without_its_token_is_refused(client, resources):
    password = secrets.token_urlsafe(16)
    operator = await make_operator(resources, "admin", password=password)
    response = await client.post(
        "/admin/login", data={"username": operator.username, "password": password}
    )
    assert response.status_code == 403
    assert "text/html" in response.headers["content-type"]
    assert COOKIE not in client.cookies


async def test_a_disabled_operator_is_signed_out_at_once(client, resources):
    admin, csrf = await signed_in_operator(resources, client, "admin")
    disabled = await client.post(f"/admin/operators/{admin.username}/disable", data={"csrf": csrf})
    assert disabled.status_code == 303
    after = await client.get("/admin/")
    assert after.status_code == 303 and after.headers["location"].startswith("/admin/login")


async def test_an_unknown_page_is_a_page(client, resources):
    await signed_in_operator(resources, client, "inspector")
    missing = await client.get("/admin/nothing-here")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert "There is no page at /admin/nothing-here" in missing.text
    bad_id = await client.get("/admin/orders/not-a-uuid")
    assert bad_id.status_code == 422 and "text/html" in bad_id.headers["content-type"]
