"""Admins manage operators over the API; an inspector cannot (403, nothing changed)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from refit.models import Operator
from tests.admin.helpers import operator_headers

PASSWORD = "correct horse battery staple"


async def _count(resources) -> int:
    async with resources.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Operator)) or 0)


async def test_an_inspector_cannot_manage_operators(client, resources):
    inspector = await operator_headers(resources, role="inspector")
    admin = await operator_headers(resources, role="admin")
    before = await _count(resources)
    created = await client.post(
        "/api/admin/operators",
        json={"username": "mallory", "password": PASSWORD, "role": "admin"},
        headers=inspector,
    )
    assert created.status_code == 403 and created.json()["code"] == "operator_forbidden"
    assert created.headers["content-type"] == "application/problem+json"
    assert (await client.get("/api/admin/operators", headers=inspector)).status_code == 403
    [admin_row] = [
        r
        for r in (await client.get("/api/admin/operators", headers=admin)).json()
        if r["role"] == "admin"
    ]
    disabled = await client.post(
        f"/api/admin/operators/{admin_row['username']}/disable", headers=inspector
    )
    assert disabled.status_code == 403
    assert await _count(resources) == before
    listed = (await client.get("/api/admin/operators", headers=admin)).json()
    assert all(r["disabled_at"] is None for r in listed)


async def test_an_admin_creates_and_disables_an_operator(client, resources):
    admin = await operator_headers(resources, role="admin")
    created = await client.post(
        "/api/admin/operators",
        json={"username": "Grace", "password": PASSWORD, "role": "inspector"},
        headers={**admin, "Idempotency-Key": "make-grace-1"},
    )
    assert created.status_code == 201, created.text
    assert (created.json()["username"], created.json()["role"]) == ("grace", "inspector")
    again = await client.post(
        "/api/admin/operators",
        json={"username": "Grace", "password": PASSWORD, "role": "inspector"},
        headers={**admin, "Idempotency-Key": "make-grace-1"},
    )
    assert again.status_code == 201 and again.json()["id"] == created.json()["id"]
    taken = await client.post(
        "/api/admin/operators",
        json={"username": "grace", "password": PASSWORD, "role": "admin"},
        headers=admin,
    )
    assert taken.status_code == 422 and taken.json()["code"] == "operator_exists"
    short = await client.post(
        "/api/admin/operators",
        json={"username": "hopper", "password": "short", "role": "admin"},
        headers=admin,
    )
    assert short.status_code == 422 and short.json()["code"] == "password_too_short"

    login = await client.post("/api/admin/login", json={"username": "grace", "password": PASSWORD})
    assert login.status_code == 200
    grace = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.get("/api/admin/orders", headers=grace)).status_code == 200

    disabled = await client.post("/api/admin/operators/grace/disable", headers=admin)
    assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None
    assert (await client.get("/api/admin/orders", headers=grace)).status_code == 401
    relogin = await client.post(
        "/api/admin/login", json={"username": "grace", "password": PASSWORD}
    )
    assert relogin.status_code == 401


async def test_five_admins_making_one_name_at_the_same_moment_make_one_operator(client, resources):
    """Each request passes the "is the name free" check before any inserts (a password's
    hash takes a while in between); the unique index decides: one 201, four told the name
    is taken, never a 500."""
    admins = [await operator_headers(resources, role="admin") for _ in range(5)]
    before = await _count(resources)
    answers = await asyncio.gather(
        *(
            client.post(
                "/api/admin/operators",
                json={"username": "ada", "password": PASSWORD, "role": "inspector"},
                headers=headers,
            )
            for headers in admins
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 422, 422, 422, 422]
    assert {a.json()["code"] for a in answers if a.status_code == 422} == {"operator_exists"}
    assert await _count(resources) == before + 1
