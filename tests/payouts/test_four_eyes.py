"""Four-eyes on an over-cap payout holds against one person with two accounts: an admin the
asker made, or one made after the request, cannot approve it (403, nothing changed, the
refusal audited); two admins who both predate the request and did not make each other can."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from refit.models import Operator, OperatorAudit
from refit.models.payout import PayoutStatus
from tests.admin.helpers import bearer_for
from tests.inspection.helpers import operator
from tests.payouts.conftest import as_quoted_order, count, pay, payout_row
from tests.payouts.test_states import _put as put_payout

PASSWORD = "correct horse battery staple"


async def _send_jobs(resources) -> int:
    return await count(
        resources,
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'payouts.send_payout'",
    )


async def _refusals(resources, subject: str) -> list[tuple[str, str]]:
    async with resources.sessionmaker() as session:
        rows = await session.execute(
            select(OperatorAudit.actor, OperatorAudit.detail["reason"].astext)
            .where(OperatorAudit.subject == subject, OperatorAudit.outcome == "refused")
            .order_by(OperatorAudit.at, OperatorAudit.id)
        )
        return [(actor, reason) for actor, reason in rows]


async def test_a_second_account_cannot_approve_its_makers_payout(
    client, resources, make_user, paying, settings
):
    settings.payout_max_usd = Decimal("400")
    asker = paying.admin  # A
    other = await operator(resources, "admin")  # C: made from the CLI, not by A
    made = await client.post(
        "/api/admin/operators",
        json={"username": "bea", "password": PASSWORD, "role": "admin"},
        headers=asker.headers,
    )
    assert made.status_code == 201, made.text
    login = {"username": "bea", "password": PASSWORD}
    refused = await client.post("/api/admin/login", json=login)
    assert refused.status_code == 403 and refused.json()["code"] == "operator_awaiting_approval"
    assert (
        await client.post("/api/admin/operators/bea/approve", headers=other.headers)
    ).status_code == 200
    signed_in = await client.post("/api/admin/login", json=login)
    assert signed_in.status_code == 200, signed_in.text
    bea = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}

    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    asked = await pay(client, order_id, asker)
    assert asked.status_code == 202 and asked.json()["status"] == "awaiting_approval"
    payout_id = asked.json()["id"]
    approve = f"/api/admin/payouts/{payout_id}/approve"

    # B, approved and older than the request, but made by A.
    by_bea = await client.post(approve, headers=bea)
    assert by_bea.status_code == 403, by_bea.text
    assert by_bea.json()["code"] == "four_eyes_refused"
    assert by_bea.headers["content-type"] == "application/problem+json"
    # An admin made after the request, even from the CLI and not by A.
    late = await operator(resources, "admin")
    by_late = await client.post(approve, headers=late.headers)
    assert by_late.status_code == 403 and by_late.json()["code"] == "four_eyes_refused"

    payout = await payout_row(resources, order_id)
    assert (payout.status, payout.approved_by) == ("awaiting_approval", None)
    assert await _send_jobs(resources) == 0
    refusals = await _refusals(resources, f"payout:{payout_id}")
    assert [actor for actor, _ in refusals] == [
        f"operator:{made.json()['id']}",
        late.actor,
    ]
    assert "made by the one who asked" in refusals[0][1]
    assert "made after this was asked for" in refusals[1][1]

    # A and C both predate the request and neither made the other.
    approved = await client.post(approve, headers=other.headers)
    assert approved.status_code == 202, approved.text  # approval answers 202 (docs/api.md)
    assert (approved.json()["status"], approved.json()["approved_by"]) == ("pending", other.actor)
    assert await _send_jobs(resources) == 1


async def test_the_payout_rule_needs_the_approver_to_be_an_approved_admin(
    client, resources, make_user, paying, settings
):
    """A token of an admin not yet approved never reaches the rule: 403 at the door."""
    settings.payout_max_usd = Decimal("400")
    made = await client.post(
        "/api/admin/operators",
        json={"username": "cleo", "password": PASSWORD, "role": "admin"},
        headers=paying.admin.headers,
    )
    assert made.status_code == 201
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    payout_id = (await pay(client, order_id, paying.admin)).json()["id"]
    async with resources.sessionmaker() as session:
        cleo = await session.scalar(select(Operator).where(Operator.username == "cleo"))
    assert cleo is not None
    tried = await client.post(
        f"/api/admin/payouts/{payout_id}/approve", headers=bearer_for(resources, cleo)
    )
    assert tried.status_code == 403 and tried.json()["code"] == "operator_awaiting_approval"
    assert (await payout_row(resources, order_id)).status == "awaiting_approval"


async def test_a_second_account_cannot_retry_cancel_or_release_its_makers_payout(
    client, resources, make_user, paying, settings
):
    """The ways out above the cap (and release at any amount) under the same rule: B, made by
    A, cannot retry, cancel or release A's payout; C, older than the request, can."""
    settings.payout_max_usd = Decimal("400")
    asker, other = paying.admin, await operator(resources, "admin")
    made = await client.post(
        "/api/admin/operators",
        json={"username": "bo", "password": PASSWORD, "role": "admin"},
        headers=asker.headers,
    )
    assert made.status_code == 201, made.text
    assert (
        await client.post("/api/admin/operators/bo/approve", headers=other.headers)
    ).status_code == 200
    signed_in = await client.post("/api/admin/login", json={"username": "bo", "password": PASSWORD})
    bo = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    payout_id = (await pay(client, order_id, asker)).json()["id"]

    tried = []
    for status, verb in [("held", "release"), ("held", "cancel"), ("failed", "retry")]:
        await put_payout(resources, payout_id, PayoutStatus(status))
        answer = await client.post(f"/api/admin/payouts/{payout_id}/{verb}", headers=bo)
        assert answer.status_code == 403, (verb, answer.text)
        assert answer.json()["code"] == "four_eyes_refused"
        assert (await payout_row(resources, order_id)).status == status  # nothing changed
        tried.append(verb)
    refusals = await _refusals(resources, f"payout:{payout_id}")
    assert [actor for actor, _ in refusals] == [f"operator:{made.json()['id']}"] * len(tried)
    assert all("made by the one who asked" in reason for _, reason in refusals)

    await put_payout(resources, payout_id, PayoutStatus.HELD)
    released = await client.post(f"/api/admin/payouts/{payout_id}/release", headers=other.headers)
    assert released.status_code == 202, released.text
    assert (await payout_row(resources, order_id)).status == "pending"


async def test_an_account_the_asker_let_in_cannot_approve_the_askers_payout(
    client, resources, make_user, paying, settings
):
    """The red team's chain: A makes X, a colleague approves X once, X makes Y, A approves Y.
    Y was not made by A, but A let it in: Y cannot be A's second admin."""
    settings.payout_max_usd = Decimal("400")
    asker, colleague = paying.admin, await operator(resources, "admin")

    async def make(by: dict, name: str) -> None:
        made = await client.post(
            "/api/admin/operators",
            json={"username": name, "password": PASSWORD, "role": "admin"},
            headers=by,
        )
        assert made.status_code == 201, made.text

    async def token(name: str) -> dict:
        login = {"username": name, "password": PASSWORD}
        signed_in = await client.post("/api/admin/login", json=login)
        assert signed_in.status_code == 200, signed_in.text
        return {"Authorization": f"Bearer {signed_in.json()['access_token']}"}

    await make(asker.headers, "xan")
    approve_xan = "/api/admin/operators/xan/approve"
    assert (await client.post(approve_xan, headers=colleague.headers)).status_code == 200
    await make(await token("xan"), "yul")
    approve_yul = "/api/admin/operators/yul/approve"
    assert (await client.post(approve_yul, headers=asker.headers)).status_code == 200
    yul = await token("yul")

    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    payout_id = (await pay(client, order_id, asker)).json()["id"]
    approve = f"/api/admin/payouts/{payout_id}/approve"
    by_yul = await client.post(approve, headers=yul)
    assert by_yul.status_code == 403 and by_yul.json()["code"] == "four_eyes_refused"
    assert "approved" in by_yul.json()["detail"]
    assert (await payout_row(resources, order_id)).status == "awaiting_approval"
    assert (await client.post(approve, headers=colleague.headers)).status_code == 202


async def test_a_payout_paid_again_is_approved_against_its_new_request(
    client, resources, make_user, paying, settings
):
    """A cancelled payout paid again is a new request on the same row: an admin made between
    the first request and the second may approve the second (four-eyes measured from the
    first, kept in `created_at`, refused them); one made after the second still may not."""
    settings.payout_max_usd = Decimal("400")
    asker, other = paying.admin, await operator(resources, "admin")
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    first = await pay(client, order_id, asker)
    assert first.status_code == 202 and first.json()["status"] == "awaiting_approval"
    payout_id = first.json()["id"]
    await put_payout(resources, payout_id, PayoutStatus.FAILED)
    cancelled = await client.post(f"/api/admin/payouts/{payout_id}/cancel", headers=other.headers)
    assert cancelled.status_code == 200, cancelled.text

    between = await operator(resources, "admin")  # made after the first request
    again = await pay(client, order_id, asker, **{"Idempotency-Key": "paid-again"})
    assert again.status_code == 202 and again.json()["status"] == "awaiting_approval"
    assert again.json()["id"] == payout_id
    late = await operator(resources, "admin")  # made after the second
    approve = f"/api/admin/payouts/{payout_id}/approve"
    by_late = await client.post(approve, headers=late.headers)
    assert by_late.status_code == 403 and by_late.json()["code"] == "four_eyes_refused"
    by_between = await client.post(approve, headers=between.headers)
    assert by_between.status_code == 202, by_between.text
    payout = await payout_row(resources, order_id)
    assert (payout.status, payout.approved_by) == ("pending", between.actor)
    assert payout.requested_at > payout.created_at
