"""Operators signed in to the dashboard through its own form, as a browser does."""

from __future__ import annotations

import re
import secrets

import httpx

from refit.models import Operator
from refit.resources import Resources
from tests.admin.helpers import make_operator

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has a form with its CSRF token"
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    form = await http.get("/admin/login")
    assert form.status_code == 200, form.text
    return await http.post(
        "/admin/login",
        data={"username": username, "password": password, "csrf": csrf_of(form.text)},
    )


async def signed_in_operator(
    resources: Resources, http: httpx.AsyncClient, role: str = "admin"
) -> tuple[Operator, str]:
    """A new operator of `role`, signed in on `http`; and the CSRF token of their forms."""
    password = secrets.token_urlsafe(16)
    operator = await make_operator(resources, role, password=password)
    response = await sign_in(http, operator.username, password)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/admin/"
    queue = await http.get("/admin/")
    assert queue.status_code == 200, queue.text
    return operator, csrf_of(queue.text)
