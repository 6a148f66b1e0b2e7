"""A new admin made by an admin works only once a second, older admin who did not make it
approves it; every step is in operator_audit."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from refit.models import Operator, OperatorAudit
from tests.admin.helpers import bearer_for, make_operator

PASSWORD = "correct horse battery staple"


async def _audit(resources, subject: str) -> list[tuple[str, str, str]]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(OperatorAudit.actor, OperatorAudit.action, OperatorAudit.outcome)
            .where(OperatorAudit.subject == subject)
            .order_by(OperatorAudit.at, OperatorAudit.id)
        )
        return [(actor, action, str(outcome)) for actor, action, outcome in rows]


async def _row(resources, username: str) -> Operator:
    async with resources.sessionmaker() as session:
        found = await session.scalar(select(Operator).where(Operator.username == username))
        assert found is not None
        return found


async def _login(client, username: str):
    return await client.post("/api/admin/login", json={"username": username, "password": PASSWORD})


async def test_a_new_admin_waits_for_a_second_older_admin_who_did_not_make_it(client, resources):
    elder = await make_operator(resources, "admin")  # made before the new admin
    maker = await make_operator(resources, "admin")
    made = await client.post(
        "/api/admin/operators",
        json={"username": "bea", "password": PASSWORD, "role": "admin"},
        headers=bearer_for(resources, maker),
    )
    assert made.status_code == 201, made.text
    assert made.json()["created_by"] == f"operator:{maker.id}"
    assert made.json()["approved_at"] is None

    # Cannot sign in, and a token it somehow holds is refused on every admin route.
    refused = await _login(client, "bea")
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "operator_awaiting_approval"
    assert "second admin's approval" in refused.json()["detail"]
    bea = await _row(resources, "bea")
    assert bea.last_login_at is None
    held = await client.get("/api/admin/operators", headers=bearer_for(resources, bea))
    assert held.status_code == 403 and held.json()["code"] == "operator_awaiting_approval"

    # Not by its maker, not by itself (refused at the door: its token does not work yet),
    # not by an admin made after it.
    younger = await make_operator(resources, "admin")
    for who in (maker, bea, younger):
        tried = await client.post(
            "/api/admin/operators/bea/approve", headers=bearer_for(resources, who)
        )
        assert tried.status_code == 403, tried.text
    by_maker = await client.post(
        "/api/admin/operators/bea/approve", headers=bearer_for(resources, maker)
    )
    assert by_maker.json()["code"] == "four_eyes_refused"
    assert "not the one who asked" in by_maker.json()["detail"]
    by_younger = await client.post(
        "/api/admin/operators/bea/approve", headers=bearer_for(resources, younger)
    )
    assert "made after" in by_younger.json()["detail"]
    assert (await _row(resources, "bea")).approved_at is None

    approved = await client.post(
        "/api/admin/operators/bea/approve", headers=bearer_for(resources, elder)
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["approved_by"] == f"operator:{elder.id}"
    assert approved.json()["approved_at"] is not None
    assert (await _login(client, "bea")).status_code == 200

    assert await _audit(resources, "operator:bea") == [
        (f"operator:{maker.id}", "operator.create", "done"),
        (f"operator:{maker.id}", "operator.approve", "refused"),
        (f"operator:{younger.id}", "operator.approve", "refused"),
        (f"operator:{maker.id}", "operator.approve", "refused"),
        (f"operator:{younger.id}", "operator.approve", "refused"),
        (f"operator:{elder.id}", "operator.approve", "done"),
    ]
    disabled = await client.post(
        "/api/admin/operators/bea/disable", headers=bearer_for(resources, elder)
    )
    assert disabled.status_code == 200
    assert (await _audit(resources, "operator:bea"))[-1] == (
        f"operator:{elder.id}",
        "operator.disable",
        "done",
    )


async def test_an_inspector_made_by_an_admin_works_at_once(client, resources):
    admin = await make_operator(resources, "admin")
    made = await client.post(
        "/api/admin/operators",
        json={"username": "ivan", "password": PASSWORD, "role": "inspector"},
        headers=bearer_for(resources, admin),
    )
    assert made.status_code == 201 and made.json()["approved_at"] is not None
    assert (await _login(client, "ivan")).status_code == 200


async def test_approving_an_unknown_or_working_operator(client, resources):
    admin = await make_operator(resources, "admin")
    headers = bearer_for(resources, admin)
    unknown = f"x{uuid.uuid4().hex[:8]}"
    missing = await client.post(f"/api/admin/operators/{unknown}/approve", headers=headers)
    assert missing.status_code == 422 and missing.json()["code"] == "not_found"
    working = await make_operator(resources, "admin")
    again = await client.post(f"/api/admin/operators/{working.username}/approve", headers=headers)
    assert again.status_code == 200 and again.json()["approved_by"] == "cli:tests"
