"""The operators page: an admin made there waits for a second, older admin who did not make
it, who approves it with the page's button; the same rule as /api/admin/operators."""

from __future__ import annotations

from sqlalchemy import select

from refit.models import OperatorAudit
from tests.admin.helpers import make_operator
from tests.dashboard.helpers import csrf_of, sign_in, signed_in_operator

PASSWORD = "correct horse battery staple"


async def _signed_in_as(client, username: str) -> str:
    """Sign `client` in as `username` (PASSWORD); the CSRF token of its forms."""
    client.cookies.clear()
    response = await sign_in(client, username, PASSWORD)
    assert response.status_code == 303, response.text
    return csrf_of((await client.get("/admin/operators")).text)


async def test_a_new_admin_made_on_the_page_waits_for_a_second_admin(client, resources):
    elder = await make_operator(resources, "admin", password=PASSWORD)
    maker, csrf = await signed_in_operator(resources, client, "admin")
    made = await client.post(
        "/admin/operators",
        data={"username": "dora", "password": PASSWORD, "role": "admin", "csrf": csrf},
    )
    assert made.status_code == 303
    page = (await client.get(made.headers["location"])).text
    assert "once a second admin" in page
    assert "waiting for a second admin" in page
    # Not offered to its maker, and refused if they try.
    assert "/admin/operators/dora/approve" not in page
    tried = await client.post("/admin/operators/dora/approve", data={"csrf": csrf})
    assert tried.status_code == 403

    client.cookies.clear()
    refused = await sign_in(client, "dora", PASSWORD)
    assert refused.status_code == 403
    assert "waiting for a second admin" in refused.text

    late = await make_operator(resources, "admin", password=PASSWORD)  # made after dora
    csrf = await _signed_in_as(client, late.username)
    assert (
        await client.post("/admin/operators/dora/approve", data={"csrf": csrf})
    ).status_code == 403

    csrf = await _signed_in_as(client, elder.username)
    page = (await client.get("/admin/operators")).text
    assert "/admin/operators/dora/approve" in page
    approved = await client.post("/admin/operators/dora/approve", data={"csrf": csrf})
    assert approved.status_code == 303
    assert "Admin approved" in (await client.get(approved.headers["location"])).text

    await _signed_in_as(client, "dora")
    async with resources.sessionmaker() as session:
        trail = (
            await session.execute(
                select(OperatorAudit.actor, OperatorAudit.action, OperatorAudit.outcome)
                .where(OperatorAudit.subject == "operator:dora")
                .order_by(OperatorAudit.at, OperatorAudit.id)
            )
        ).all()
    assert [(a, b, str(c)) for a, b, c in trail] == [
        (f"operator:{maker.id}", "operator.create", "done"),
        (f"operator:{maker.id}", "operator.approve", "refused"),
        (f"operator:{late.id}", "operator.approve", "refused"),
        (f"operator:{elder.id}", "operator.approve", "done"),
    ]
