"""The on-call pages, acted through as an admin: feature flags changed (by the API's writer,
the operator named), a failed job retried with procrastinate's retry and a stuck one shown,
and the audit trail paged and filtered. Inspectors may not open them."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from sqlalchemy import select, text

from refit import queue
from refit.admin import audit
from refit.models import OperatorAudit
from refit.models.flag import Flag, FlagAudit
from tests.dashboard.helpers import signed_in_operator
from tests.inspection.helpers import shipped_order

PAGES = ("/admin/flags", "/admin/webhooks", "/admin/jobs", "/admin/audit")


def _flag_form(**fields: str) -> dict[str, str]:
    return {"percent": "", "wallets": "", "variants": "", "description": "", **fields}


async def test_an_admin_creates_and_changes_a_flag_named_in_its_audit(client, resources):
    admin, csrf = await signed_in_operator(resources, client, "admin")
    made = await client.post(
        "/admin/flags",
        data=_flag_form(
            csrf=csrf,
            name="new-checkout",
            mode="percent",
            percent="20",
            variants="control:1, treatment:3",
            description="The new checkout",
        ),
    )
    assert made.status_code == 303
    shown = await client.get(made.headers["location"])
    assert "Flag new-checkout saved" in shown.text
    row = re.search(r'<tr data-flag="new-checkout">.*?</tr>', shown.text, re.S)
    assert row and "20 % of wallets" in row.group(0) and admin.username in row.group(0)

    changed = await client.post(
        "/admin/flags",
        data=_flag_form(
            csrf=csrf, name="new-checkout", mode="wallets", wallets="wallet-a\nwallet-b, wallet-a"
        ),
    )
    assert changed.status_code == 303
    async with resources.sessionmaker() as session:
        flag = (await session.scalars(select(Flag).where(Flag.name == "new-checkout"))).one()
        changes = (await session.scalars(select(FlagAudit).order_by(FlagAudit.created_at))).all()
    assert (flag.mode.value, flag.wallets, flag.variants) == (
        "wallets",
        ["wallet-a", "wallet-b"],
        [],
    )
    assert [c.actor for c in changes] == [f"operator:{admin.id}"] * 2
    assert changes[0].before is None and changes[1].before["mode"] == "percent"

    # A form that does not validate comes back with what was typed and the problem by it.
    refused = await client.post(
        "/admin/flags",
        data=_flag_form(
            csrf=csrf,
            name="new-checkout",
            mode="percent",
            percent="150",
            description="typed, not lost",
        ),
    )
    assert refused.status_code == 422
    assert 'id="flag-new-checkout-percent-error"' in refused.text
    assert 'value="150"' in refused.text and 'value="typed, not lost"' in refused.text
    bad_name = await client.post(
        "/admin/flags", data=_flag_form(csrf=csrf, name="Bad Name!", mode="on")
    )
    assert bad_name.status_code == 422 and 'id="new-flag-name-error"' in bad_name.text
    async with resources.sessionmaker() as session:
        assert len((await session.scalars(select(FlagAudit))).all()) == 2

    trail = await client.get("/admin/audit")
    assert trail.text.count('data-action="flag.change"') == 2 and "flag:new-checkout" in trail.text


async def _fail_for_good(resources, run_jobs) -> int:
    """A notify job for a template that does not exist: it fails each attempt, then for good."""
    async with resources.sessionmaker() as session, session.begin():
        job_id = await queue.defer(
            session,
            "notifications.notify_user",
            user_id=str(uuid.uuid4()),
            template="no-such-template",
            context={"email": "ada@example.com"},
        )
    assert job_id is not None
    for _ in range(6):
        await run_jobs()
        async with resources.sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE id = :id "
                    "AND status = 'todo'"
                ),
                {"id": job_id},
            )
    return job_id


async def _job(resources, job_id: int) -> tuple[str, int]:
    async with resources.sessionmaker() as session:
        row = (
            await session.execute(
                text("SELECT status::text, attempts FROM procrastinate_jobs WHERE id = :id"),
                {"id": job_id},
            )
        ).one()
        return row[0], row[1]


async def test_a_failed_job_is_shown_with_its_error_and_retried(client, resources, run_jobs):
    job_id = await _fail_for_good(resources, run_jobs)
    assert (await _job(resources, job_id))[0] == "failed"
    async with resources.sessionmaker() as session, session.begin():
        stuck_id = await queue.defer(session, "queue.retry_stalled_jobs", timestamp=0)
        await session.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() - interval '20 minutes' "
                "WHERE id = :id"
            ),
            {"id": stuck_id},
        )
    admin, csrf = await signed_in_operator(resources, client, "admin")
    page = await client.get("/admin/jobs")
    assert page.status_code == 200
    failed = re.search(rf'<tr data-job="{job_id}">.*?</tr>', page.text, re.S)
    assert failed, page.text
    row = failed.group(0)
    assert "notifications.notify_user" in row and "unknown email template" in row
    assert "template=(hidden)" in row and "ada@example.com" not in page.text
    stuck = re.search(r'<table id="jobs-stuck".*?</table>', page.text, re.S)
    assert stuck and f'data-job="{stuck_id}"' in stuck.group(0)

    retried = await client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": csrf})
    assert retried.status_code == 303
    assert f"Job {job_id} queued again" in (await client.get(retried.headers["location"])).text
    status, attempts = await _job(resources, job_id)
    assert status == "todo" and attempts == 6
    async with resources.sessionmaker() as session:
        [done] = (
            await session.scalars(select(OperatorAudit).where(OperatorAudit.action == "job.retry"))
        ).all()
    assert done.actor == f"operator:{admin.id}" and done.subject == f"job:{job_id}"
    assert done.detail["task"] == "notifications.notify_user"
    assert "ada@example.com" not in str(done.detail)
    # Waiting again, it is not failed: a second retry is a conflict, shown as a page.
    again = await client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": csrf})
    assert again.status_code == 409 and "Only a failed job" in again.text
    missing = await client.post("/admin/jobs/999999999/retry", data={"csrf": csrf})
    assert missing.status_code == 404


async def test_the_audit_trail_pages_newest_first_and_filters_by_operator(client, resources):
    admin, _ = await signed_in_operator(resources, client, "admin")
    other, _ = await signed_in_operator(resources, client, "admin")
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    async with resources.sessionmaker() as session, session.begin():
        for i in range(120):
            actor = admin if i % 2 else other
            await audit.record(session, f"operator:{actor.id}", "test.act", f"thing:{i}", "done")
        # Times apart (and two the same, broken by id) so the order is known.
        await session.execute(
            text(
                "UPDATE operator_audit SET at = :t0 + make_interval(secs => "
                "CAST(split_part(subject, ':', 2) AS int) / 2 * 2) "
                "WHERE action = 'test.act'"
            ),
            {"t0": t0},
        )
    seen: list[str] = []
    url: str | None = f"/admin/audit?by={admin.username}"
    while url:
        page = await client.get(url)
        assert page.status_code == 200
        seen += re.findall(r"thing:(\d+)", page.text)
        found = re.search(r'rel="next" href="([^"]+)"', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert [int(s) for s in seen] == list(range(119, 0, -2))
    everyone = await client.get("/admin/audit")
    numbers = [int(s) for s in re.findall(r"thing:(\d+)", everyone.text)]
    # Newest first: the two admins' creation (now), then the acts of an hour ago, 50 a page.
    assert everyone.text.count('data-action="operator.create"') == 2
    assert len(numbers) == 48 and [n // 2 for n in numbers] == [59 - i // 2 for i in range(48)]
    assert (await client.get("/admin/audit?by=nobody-here")).text.count("thing:") == 0


async def test_the_audit_trail_shows_order_moves_an_operator_made(client, resources, make_user):
    order_id = await shipped_order(client, resources, await make_user())
    admin, csrf = await signed_in_operator(resources, client, "admin")
    cancelled = await client.post(
        f"/admin/orders/{order_id}/cancel", data={"csrf": csrf, "reason": "seller phoned"}
    )
    assert cancelled.status_code == 303
    trail = await client.get(f"/admin/audit?by={admin.username}")
    row = re.search(r'<tr data-action="order.cancelled">.*?</tr>', trail.text, re.S)
    assert row and f'href="/admin/orders/{order_id}"' in row.group(0)
    assert admin.username in row.group(0) and "seller phoned" in row.group(0)
    # Moves by the seller or the system are not operators' acts.
    assert trail.text.count('data-action="order.') == 1
    assert (await client.get("/admin/audit?after=not-a-cursor")).status_code == 400


@pytest.mark.parametrize("path", PAGES)
async def test_an_inspector_may_not_open_the_on_call_pages(client, resources, path):
    _, csrf = await signed_in_operator(resources, client, "inspector")
    assert (await client.get(path)).status_code == 403
    queue_page = await client.get("/admin/")
    assert f'href="{path}"' not in queue_page.text
    if path == "/admin/flags":
        refused = await client.post(
            "/admin/flags", data=_flag_form(csrf=csrf, name="sneaky", mode="on")
        )
        assert refused.status_code == 403
    if path == "/admin/jobs":
        assert (await client.post("/admin/jobs/1/retry", data={"csrf": csrf})).status_code == 403
