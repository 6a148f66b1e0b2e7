"""Attacks on the warehouse floor's dashboard (issue 24), each asserting the refusal: a
stranger (no session), a seller (their own JWT, no operator account), and insiders (an
inspector trying admin moves, one operator's session carrying another's CSRF token).

"Nothing changed" is checked on a fingerprint of every table a move could write (each row as
text, hashed), taken before and after the refused requests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
import uuid
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from solders.keypair import Keypair
from sqlalchemy import select, text, update

from refit import queue
from refit.admin import audit
from refit.admin.tokens import issue_operator_token
from refit.app import create_app
from refit.dashboard import live
from refit.dashboard.session import AUDIENCE, COOKIE
from refit.models import Order, OrderStatus
from refit.models.inspection import EvidencePhoto, Inspection
from refit.models.payout import PayoutStatus
from refit.models.shipping import WebhookInbox
from tests.admin.helpers import make_operator
from tests.dashboard.helpers import signed_in_operator
from tests.dashboard.returns_setup import label_failed
from tests.inspection.helpers import (
    BAD_IMEI,
    IMEI,
    inspecting_order,
    jpeg_with_gps,
    operator,
    shipped_order,
)
from tests.payouts.conftest import as_quoted_order, pay, payout_row

# Every table a dashboard move writes (or a job it queues).
_TABLES = (
    "orders",
    "order_status_history",
    "operator_audit",
    "operators",
    "procrastinate_jobs",
    "webhook_inbox",
    "sweep_attempts",
    "feature_flags",
    "feature_flag_audit",
    "shipping_returns",
    "shipping_label_purchases",
    "evidence_photos",
    "inspections",
    "payouts",
    "payout_events",
)
XSS = '"><svg onload=alert(1)><script>alert(2)</script>'


async def fingerprint(resources) -> dict[str, str]:
    async with resources.sessionmaker() as session:
        found = {}
        for table in _TABLES:
            found[table] = await session.scalar(
                text(
                    f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                    f"FROM {table} t"
                )
            )
        return found


def _form_inspect(csrf: str, **changes: str) -> dict[str, str]:
    return {
        "csrf": csrf,
        "grade": "good",
        "storage": "256GB",
        "imei": IMEI,
        "powers_on": "yes",
        "activation_lock_off": "yes",
        "screen": "ok",
        "battery_health_pct": "90",
        **changes,
    }


async def _webhook_row(resources, **values: Any) -> uuid.UUID:
    async with resources.sessionmaker() as session, session.begin():
        row = WebhookInbox(
            provider="sandbox",
            dedupe_key=uuid.uuid4().hex,
            event=values.pop("event", "track_updated"),
            body=values.pop("body", {"data": {"tracking_number": "9400111"}}),
            **values,
        )
        session.add(row)
        await session.flush()
        return row.id


async def _failed_job(resources, task: str, **args: Any) -> int:
    async with resources.sessionmaker() as session, session.begin():
        job_id = await queue.defer(session, task, **args)
        assert job_id is not None
        await session.execute(
            text("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = :id"),
            {"id": job_id},
        )
    return job_id


async def _targets(client, resources, make_user) -> SimpleNamespace:
    """Real things for each new POST to act on, in states where the move would succeed."""
    shipped = await shipped_order(client, resources, await make_user())
    failed_label = await label_failed(client, resources, make_user)
    inbox_id = await _webhook_row(resources, attempts=2, last_error="boom")
    job_id = await _failed_job(
        resources, "notifications.notify_user", user_id=str(uuid.uuid4()), template="x"
    )
    return SimpleNamespace(
        shipped=shipped, failed_label=str(failed_label.id), inbox_id=inbox_id, job_id=job_id
    )


def _new_posts(t: SimpleNamespace) -> list[tuple[str, dict[str, str]]]:
    """Every POST issue 24 added, on a real target, with the fields its form sends."""
    return [
        (f"/admin/orders/{t.shipped}/claim", {}),
        (f"/admin/orders/{t.shipped}/claim", {"take_over": "true"}),
        (f"/admin/orders/{t.shipped}/unclaim", {}),
        (f"/admin/orders/{t.shipped}/send-home", {}),
        (f"/admin/orders/{t.shipped}/return-handed-over", {}),
        (f"/admin/orders/{t.failed_label}/retry-label", {}),
        (f"/admin/orders/{t.failed_label}/refund-label", {}),
        (f"/admin/orders/{t.shipped}/inspect", _form_inspect("")),
        ("/admin/flags", {"name": "sneaky", "mode": "on"}),
        (f"/admin/webhooks/{t.inbox_id}/replay", {}),
        (f"/admin/jobs/{t.job_id}/retry", {}),
    ]


# --- a stranger ------------------------------------------------------------------------


async def test_a_stranger_gets_the_login_page_never_data_nor_a_move(client, resources, make_user):
    t = await _targets(client, resources, make_user)
    async with resources.sessionmaker() as session:
        number = (await session.get(Order, uuid.UUID(t.shipped))).order_number  # type: ignore[union-attr]
        stamp = (await live.order_glance(session, uuid.UUID(t.shipped))).stamp  # type: ignore[union-attr]
    pages = [
        "/admin/",
        "/admin/?work=mine",
        f"/admin/?q={number}",
        f"/admin/orders/{t.shipped}",
        f"/admin/orders/{t.shipped}/inspect",
        f"/admin/orders/{t.shipped}/held-photos/{uuid.uuid4()}.jpg",
        f"/admin/orders/{t.shipped}/label",
        f"/admin/orders/{t.shipped}/return-label",
        "/admin/flags",
        "/admin/webhooks",
        "/admin/jobs",
        "/admin/audit",
    ]
    for path in pages:
        # With and without the live stamp of what the order shows now: the 204 "unchanged"
        # would itself be an answer about the order.
        for headers in ({}, {live.HEADER: stamp}):
            shown = await client.get(path, headers=headers)
            assert shown.status_code == 303, (path, shown.status_code)
            assert shown.headers["location"].startswith("/admin/login?next="), path
            assert number not in shown.text and live.HEADER not in shown.headers
    before = await fingerprint(resources)
    for path, data in _new_posts(t):
        refused = await client.post(path, data=data)
        assert refused.status_code == 401, (path, refused.status_code)
        assert number not in refused.text
    assert await fingerprint(resources) == before


# --- a seller ---------------------------------------------------------------------------


async def test_a_sellers_token_and_forged_cookies_open_nothing(client, resources, make_user):
    seller = await make_user()
    t = await _targets(client, resources, make_user)
    settings = resources.settings
    inspector = await make_operator(resources, "inspector")
    admin = await make_operator(resources, "admin")
    now = int(time.time())
    dashboard_claims = {
        "sub": str(admin.id),
        "sid": "forged",
        "aud": AUDIENCE,
        "iss": settings.public_url,
        "iat": now,
        "exp": now + 600,
    }
    unsigned = (
        base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        + "."
        + base64.urlsafe_b64encode(json.dumps(dashboard_claims).encode()).rstrip(b"=").decode()
        + "."
    )
    cookies = {
        "the seller's own token": seller.token,
        "an inspector's API token": issue_operator_token(settings, inspector).token,
        "an admin's API token": issue_operator_token(settings, admin).token,
        "alg none": unsigned,
        "another key": jwt.encode(dashboard_claims, "not-our-secret-" * 4, algorithm="HS256"),
        "garbage": "a.b.c",
    }
    before = await fingerprint(resources)
    for what, token in cookies.items():
        client.cookies.clear()
        client.cookies.set(COOKIE, token, path="/admin")
        for path in ("/admin/", f"/admin/orders/{t.shipped}", "/admin/jobs", "/admin/webhooks"):
            shown = await client.get(path)
            assert shown.status_code == 303, (what, path, shown.status_code)
            assert shown.headers["location"].startswith("/admin/login"), (what, path)
        for path, data in _new_posts(t):
            refused = await client.post(path, data=data)
            assert refused.status_code == 401, (what, path, refused.status_code)
    # The seller's token as a bearer header, as the API takes it: the dashboard reads none.
    client.cookies.clear()
    for path in ("/admin/", f"/admin/orders/{t.shipped}"):
        assert (await client.get(path, headers=seller.headers)).status_code == 303
    for path, data in _new_posts(t):
        assert (await client.post(path, data=data, headers=seller.headers)).status_code == 401
    assert await fingerprint(resources) == before


async def test_a_forged_cursor_is_a_400_for_a_seller_not_a_crash(client, resources, make_user):
    """The one cursor codec (refit/pagination.py) behind the seller's order list, the
    operators' API lists and the dashboard's audit trail: a cursor of the right shape whose
    id is not a string must be refused, not raise."""
    seller = await make_user()
    for position in (
        ["2026-01-01T00:00:00+00:00", 5],
        ["2026-01-01T00:00:00+00:00", ["x"]],
        ["2026-01-01T00:00:00+00:00", {"a": 1}],
    ):
        cursor = base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")
        mine = await client.get("/api/orders", params={"cursor": cursor}, headers=seller.headers)
        assert mine.status_code == 400, (position, mine.status_code)
        assert mine.json()["code"] == "invalid_cursor"


# --- CSRF and roles -----------------------------------------------------------------------


async def test_every_new_post_refuses_a_missing_forged_or_borrowed_csrf_token(
    client, open_client, resources, make_user
):
    t = await _targets(client, resources, make_user)
    _, csrf = await signed_in_operator(resources, client, "admin")
    # Another admin's session, in another browser: their token is valid, for them only.
    app = create_app(resources.settings, resources=resources)
    async with app.router.lifespan_context(app), open_client(app) as other_http:
        _, others_csrf = await signed_in_operator(resources, other_http, "admin")
    assert others_csrf != csrf
    altered = csrf[:-1] + ("1" if csrf.endswith("0") else "0")
    before = await fingerprint(resources)
    for path, data in _new_posts(t):
        for token in (None, "", "forged", altered, others_csrf, csrf.upper()):
            sent = {k: v for k, v in data.items() if k != "csrf"}
            if token is not None:
                sent["csrf"] = token
            refused = await client.post(path, data=sent)
            assert refused.status_code == 403, (path, token, refused.status_code)
            assert "did not come from the dashboard" in refused.text, path
        # The token in a query string or a header is not the form's.
        assert (await client.post(f"{path}?csrf={csrf}", data=data)).status_code == 403
        assert (
            await client.post(path, data=data, headers={"X-CSRF-Token": csrf})
        ).status_code == 403
    assert await fingerprint(resources) == before


ADMIN_POSTS = [
    "/admin/orders/{failed_label}/retry-label",
    "/admin/orders/{failed_label}/refund-label",
    "/admin/flags",
    "/admin/webhooks/{inbox_id}/replay",
    "/admin/jobs/{job_id}/retry",
    "/admin/jobs/{purchase_job}/retry",
    "/admin/orders/{shipped}/cancel",
    "/admin/operators",
]


async def test_an_inspector_is_refused_every_admin_move_with_a_valid_token(
    client, resources, make_user
):
    t = await _targets(client, resources, make_user)
    async with resources.sessionmaker() as session:
        purchase_job = await session.scalar(
            text(
                "SELECT id FROM procrastinate_jobs WHERE task_name = 'shipping.purchase_label' "
                "AND args ->> 'order_id' = :id"
            ),
            {"id": t.failed_label},
        )
    _, csrf = await signed_in_operator(resources, client, "inspector")
    before = await fingerprint(resources)
    fields = {
        "csrf": csrf,
        "name": "sneaky",
        "mode": "on",
        "username": "evil-admin",
        "password": "x" * 20,
        "role": "admin",
        "reason": "because",
    }
    for template in ADMIN_POSTS:
        path = template.format(**vars(t), purchase_job=purchase_job)
        refused = await client.post(path, data=fields)
        assert refused.status_code == 403, (path, refused.status_code)
        assert "Only an admin" in refused.text
    for path in ("/admin/flags", "/admin/webhooks", "/admin/jobs", "/admin/audit"):
        assert (await client.get(path)).status_code == 403, path
    # The order page offers the inspector no admin-only button.
    page = (await client.get(f"/admin/orders/{t.failed_label}")).text
    assert "/retry-label" not in page and "/refund-label" not in page
    assert await fingerprint(resources) == before


# --- held photos --------------------------------------------------------------------------


async def test_a_held_photo_stays_with_its_order_and_its_exact_name(client, resources, make_user):
    inspector = await operator(resources, "inspector")
    order_a = await inspecting_order(client, resources, await make_user(), inspector)
    order_b = await inspecting_order(client, resources, await make_user(), inspector)
    _, csrf = await signed_in_operator(resources, client, "inspector")
    refused = await client.post(
        f"/admin/orders/{order_a}/inspect",
        data=_form_inspect(csrf, imei=BAD_IMEI),
        files=[("photos", ("front.jpg", jpeg_with_gps(), "image/jpeg"))],
    )
    assert refused.status_code == 422
    [held] = re.findall(r'name="held_photos" value="([^"]+)"', refused.text)
    assert (await client.get(f"/admin/orders/{order_a}/held-photos/{held}")).status_code == 200

    # Another order's URL, another extension, other spellings, forged ids, traversal.
    photo_id = held.split(".")[0]
    names = [
        f"{photo_id}.png",
        f"{photo_id}.JPG",
        f"{photo_id.upper()}.jpg",
        f"{photo_id}.jpg.png",
        f"{uuid.uuid4()}.jpg",
        f"..%2F{order_a}%2F{held}",
        f"..%2F..%2Flabels%2F{order_a}.pdf",
        f"%2E%2E%2F{held}",
        f"{held}%2F..",
        f"{held}%20",
        "evidence",
    ]
    for name in names:
        got = await client.get(f"/admin/orders/{order_a}/held-photos/{name}")
        assert got.status_code == 404, (name, got.status_code)
    for path in (
        f"/admin/orders/{order_b}/held-photos/{held}",
        f"/admin/orders/{order_a}/../{order_b}/held-photos/{held}",
        f"/admin/orders/{order_b}/held-photos/..%2F..%2F{order_a}%2F{held}",
    ):
        got = await client.get(path)
        assert got.status_code == 404, (path, got.status_code)
        assert got.headers["content-type"].startswith("text/html")

    # Order A's held photo named in order B's verdict: refused by the photos field, and B
    # gets no photo and no verdict.
    cross = await client.post(
        f"/admin/orders/{order_b}/inspect", data={**_form_inspect(csrf), "held_photos": held}
    )
    assert cross.status_code == 422, cross.status_code
    assert 'id="photos-error"' in cross.text and "no longer there" in cross.text
    assert 'name="held_photos"' not in cross.text
    async with resources.sessionmaker() as session:
        oid = uuid.UUID(order_b)
        assert (
            await session.scalars(select(EvidencePhoto).where(EvidencePhoto.order_id == oid))
        ).all() == []
        assert await session.scalar(select(Inspection).where(Inspection.order_id == oid)) is None


async def test_held_photos_cannot_lift_the_count_of_a_form(client, resources, make_user):
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    _, csrf = await signed_in_operator(resources, client, "inspector")
    twenty = [
        ("photos", (f"p{i}.jpg", jpeg_with_gps(color=(i * 10, 30, 30)), "image/jpeg"))
        for i in range(20)
    ]
    first = await client.post(
        f"/admin/orders/{order_id}/inspect", data=_form_inspect(csrf, imei=BAD_IMEI), files=twenty
    )
    assert first.status_code == 422
    held = re.findall(r'name="held_photos" value="([^"]+)"', first.text)
    assert len(held) == 20
    # The 20 held, sent again (and twice each), plus one new photo: 21 is refused.
    form: dict[str, Any] = {**_form_inspect(csrf), "held_photos": held + held}
    more = await client.post(
        f"/admin/orders/{order_id}/inspect",
        data=form,
        files=[("photos", ("extra.jpg", jpeg_with_gps(color=(1, 2, 3)), "image/jpeg"))],
    )
    assert more.status_code == 422 and 'id="photos-error"' in more.text
    assert "At most 20 photos" in more.text
    async with resources.sessionmaker() as session:
        oid = uuid.UUID(order_id)
        assert (
            await session.scalars(select(EvidencePhoto).where(EvidencePhoto.order_id == oid))
        ).all() == []


# --- XSS ------------------------------------------------------------------------------------


async def test_what_anyone_typed_is_shown_escaped_on_every_new_page(client, resources, make_user):
    """Values a seller, a carrier, a job or an operator put in the tables, shown on the queue,
    the order page, the refused inspection form, the inbox, the jobs and audit pages."""
    inspector = await operator(resources, "inspector")
    order_id = await inspecting_order(client, resources, await make_user(), inspector)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == uuid.UUID(order_id))
            .values(attention_reason=XSS, device_model=XSS, tracking_number=XSS[:60])
        )
    await _webhook_row(
        resources,
        event=XSS,
        body={"data": {"tracking_number": XSS}},
        error=XSS,
        last_error=XSS,
        attempts=3,
    )
    await _webhook_row(resources, body={"data": "not an object"}, attempts=1, last_error=XSS)
    await _webhook_row(resources, body={"data": [XSS]}, attempts=1)
    job_id = await _failed_job(resources, "notifications.notify_user", user_id=XSS, template=XSS)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO job_errors (job_id, task_name, attempt, error_type, message, "
                "traceback) VALUES (:id, 'notifications.notify_user', 1, :x, :x, :x)"
            ),
            {"id": job_id, "x": XSS},
        )
        await audit.record(session, f"operator:{inspector.id}", XSS, XSS, "done", {"x": XSS})
    _, csrf = await signed_in_operator(resources, client, "admin")
    flag = await client.post(
        "/admin/flags",
        data={
            "csrf": csrf,
            "name": "xss-flag",
            "mode": "on",
            "wallets": "",
            "description": XSS,
            "percent": "",
            "variants": "",
        },
    )
    assert flag.status_code == 303, flag.text
    bad_flag = await client.post(
        "/admin/flags",
        data={
            "csrf": csrf,
            "name": XSS[:60],
            "mode": XSS[:16],
            "percent": XSS[:8],
            "variants": XSS,
            "wallets": "",
            "description": XSS,
        },
    )
    assert bad_flag.status_code == 422
    form = await client.post(
        f"/admin/orders/{order_id}/inspect",
        data=_form_inspect(
            csrf,
            imei=XSS[:40],
            notes=XSS,
            serial=XSS,
            override_reason=XSS,
            override_price_usd=XSS[:20],
            grade=XSS,
            storage=XSS,
            screen=XSS,
        ),
    )
    assert form.status_code == 422
    shown = {
        "queue": await client.get("/admin/?work=attention"),
        "search": await client.get("/admin/", params={"q": XSS}),
        "order": await client.get(f"/admin/orders/{order_id}"),
        "webhooks": await client.get("/admin/webhooks"),
        "jobs": await client.get("/admin/jobs"),
        "audit": await client.get("/admin/audit"),
        "audit by": await client.get("/admin/audit", params={"by": XSS[:32]}),
        "flags": await client.get("/admin/flags"),
        "refused flag": bad_flag,
        "refused form": form,
    }
    for where, response in shown.items():
        assert response.status_code in (200, 422), (where, response.status_code)
        html = response.text
        assert "<svg onload" not in html and "<script>alert" not in html, where
    for where in ("queue", "order", "webhooks", "audit", "flags", "refused form"):
        assert "&lt;svg onload=alert(1)&gt;" in shown[where].text, f"{where} shows the value"


# --- claims -----------------------------------------------------------------------------------


async def test_claims_of_final_orders_and_takeover_races_stay_consistent(
    client, open_client, resources, make_user
):
    order_id = await shipped_order(client, resources, await make_user())
    finished = await shipped_order(client, resources, await make_user())
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == uuid.UUID(finished))
            .values(status=OrderStatus.COMPLETED)
        )
    app = create_app(resources.settings, resources=resources)
    async with app.router.lifespan_context(app), contextlib.AsyncExitStack() as stack:
        signed = []
        for role in ("inspector", "inspector", "inspector", "admin"):
            http = await stack.enter_async_context(open_client(app))
            op, csrf = await signed_in_operator(resources, http, role)
            signed.append((http, op, csrf))
        http, _, csrf = signed[0]
        before = await fingerprint(resources)
        closed = await http.post(f"/admin/orders/{finished}/claim", data={"csrf": csrf})
        assert closed.status_code == 409 and "no work to claim" in closed.text
        assert await fingerprint(resources) == before

        # Four take-overs at once (N+1 where one holder is allowed): they serialize on the
        # order's lock; the holder is the last one audited, and each change is audited once.
        answers = await asyncio.gather(
            *(
                h.post(f"/admin/orders/{order_id}/claim", data={"csrf": c, "take_over": "true"})
                for h, _, c in signed
            )
        )
        assert all(a.status_code == 303 for a in answers), [a.status_code for a in answers]
    async with resources.sessionmaker() as session:
        holder = await session.scalar(
            select(Order.claimed_by).where(Order.id == uuid.UUID(order_id))
        )
        trail = (
            await session.execute(
                text("SELECT actor, action, detail FROM operator_audit WHERE subject = :s"),
                {"s": f"order:{order_id}"},
            )
        ).all()
    # One claim and three take-overs, a chain: each took it from the one before; the holder
    # is the one nobody took it from.
    assert sorted(a for _, a, _ in trail) == ["order.claim"] + ["order.take_over"] * 3
    actors = {actor for actor, _, _ in trail}
    taken_from = {d["from"] for _, a, d in trail if a == "order.take_over"}
    assert len(actors) == 4 and len(taken_from) == 3
    assert actors - taken_from == {f"operator:{holder}"}


# --- jobs and webhooks ------------------------------------------------------------------------


async def test_retrying_a_failed_payout_job_never_pays_a_stopped_payout(
    client, resources, settings, make_user, run_jobs
):
    """A failed payout (its retry needs an admin, over the cap a second one): retrying its
    failed send job from the jobs page must not send anything; the job reads the payout."""
    settings.treasury_pubkey = str(Keypair().pubkey())
    requester = await operator(resources, "admin")
    setup = SimpleNamespace(inspector=await operator(resources, "inspector"))
    order_id, _, _ = await as_quoted_order(client, resources, make_user, setup)
    asked = await pay(client, order_id, requester)
    assert asked.status_code == 202, asked.text
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE payouts SET status = 'failed', error = 'landed with an error', "
                "lamports = 1, signed_tx = '\\x00'::bytea, signature = 'sig', "
                "last_valid_block_height = 1 WHERE order_id = :o"
            ),
            {"o": order_id},
        )
        await session.execute(
            text(
                "UPDATE procrastinate_jobs SET status = 'failed' "
                "WHERE task_name = 'payouts.send_payout' AND args ->> 'order_id' = :o"
            ),
            {"o": order_id},
        )
        job_id = await session.scalar(
            text(
                "SELECT id FROM procrastinate_jobs WHERE task_name = 'payouts.send_payout' "
                "AND args ->> 'order_id' = :o"
            ),
            {"o": order_id},
        )
    if job_id is None:  # over the cap: no send job was queued; one failed as if it had been
        job_id = await _failed_job(resources, "payouts.send_payout", order_id=order_id)
    _, csrf = await signed_in_operator(resources, client, "admin")
    retried = await client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": csrf})
    assert retried.status_code == 303
    await run_jobs()
    payout = await payout_row(resources, order_id)
    assert payout.status is PayoutStatus.FAILED and payout.signature == "sig"
    assert payout.approved_by is None
    # Odd ids: never a 500.
    for odd in ("-1", "0", str(2**63), str(2**80), "1e3", "abc"):
        answer = await client.post(f"/admin/jobs/{odd}/retry", data={"csrf": csrf})
        assert answer.status_code in (404, 422), (odd, answer.status_code)


async def test_a_label_job_retried_twice_queues_one_purchase(client, resources, make_user):
    order = await label_failed(client, resources, make_user)
    async with resources.sessionmaker() as session:
        failed_job = await session.scalar(
            text(
                "SELECT id FROM procrastinate_jobs WHERE task_name = 'shipping.purchase_label' "
                "AND args ->> 'order_id' = :id"
            ),
            {"id": str(order.id)},
        )
    _, csrf = await signed_in_operator(resources, client, "admin")
    button = await client.post(f"/admin/orders/{order.id}/retry-label", data={"csrf": csrf})
    assert button.status_code == 303 and "done=label_retried" in button.headers["location"]
    job_page = await client.post(f"/admin/jobs/{failed_job}/retry", data={"csrf": csrf})
    assert job_page.status_code == 409 and "already waiting" in job_page.text
    async with resources.sessionmaker() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = "
                "'shipping.purchase_label' AND args ->> 'order_id' = :id AND status = 'todo'"
            ),
            {"id": str(order.id)},
        )
    assert waiting == 1


async def test_a_webhook_replay_refuses_handled_unreadable_and_unknown_rows(client, resources):
    handled = await _webhook_row(resources)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(WebhookInbox)
            .where(WebhookInbox.id == handled)
            .values(processed_at=text("now()"), outcome="moved")
        )
    unreadable = await _webhook_row(resources, body=None, raw_body="{nope", error="unreadable")
    _, csrf = await signed_in_operator(resources, client, "admin")
    before = await fingerprint(resources)
    for inbox_id, status in ((handled, 409), (unreadable, 409), (uuid.uuid4(), 404)):
        refused = await client.post(f"/admin/webhooks/{inbox_id}/replay", data={"csrf": csrf})
        assert refused.status_code == status, (inbox_id, refused.status_code)
    bad = await client.post("/admin/webhooks/not-a-uuid/replay", data={"csrf": csrf})
    assert bad.status_code == 422
    assert await fingerprint(resources) == before


# --- cursors ------------------------------------------------------------------------------------


SOME_ID = "5d0f4b8e-2c1a-4f7e-9a63-0e8b7c2d41f5"


@pytest.mark.parametrize(
    "after",
    [
        "garbage",
        "~",
        "2026-01-01T00:00:00~" + SOME_ID,
        "2026-01-01T00:00:00+00:00~not-a-uuid",
        "2026-13-45T00:00:00+00:00~" + SOME_ID,
        "2026-01-01T00:00:00+00:00~" + SOME_ID + "' OR '1'='1",
        "'; DROP TABLE orders; --~" + SOME_ID,
        "0001-01-01T00:00:00+14:00~" + SOME_ID,
        "9999-12-31T23:59:59-23:59~" + SOME_ID,
        "2026-01-01T00:00:00+23:59~" + SOME_ID,
    ],
)
async def test_a_malformed_queue_cursor_is_a_page_never_a_crash(client, resources, after):
    await signed_in_operator(resources, client, "inspector")
    shown = await client.get("/admin/", params={"after": after})
    assert shown.status_code in (200, 400, 422), shown.status_code
    assert "text/html" in shown.headers["content-type"]
    if shown.status_code != 200:
        assert "first page" in shown.text or "cannot be stored" in shown.text
    async with resources.sessionmaker() as session:
        assert await session.scalar(text("SELECT to_regclass('orders') IS NOT NULL"))


@pytest.mark.parametrize(
    "position",
    [
        ["2026-01-01T00:00:00+00:00", 5],
        ["2026-01-01T00:00:00+00:00", None],
        ["2026-01-01T00:00:00+00:00"],
        "not a list",
    ],
)
async def test_a_forged_audit_cursor_is_refused_as_a_page(client, resources, position):
    await signed_in_operator(resources, client, "admin")
    cursor = base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")
    shown = await client.get("/admin/audit", params={"after": cursor})
    assert shown.status_code == 400, shown.status_code
    assert "text/html" in shown.headers["content-type"]
