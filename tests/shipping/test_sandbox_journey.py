"""Done-when 4 of the tracking issue: `refit run` on the embedded default (its own PostgreSQL
and Redis, the sandbox carrier) takes an order from its label to `received` by the sandbox's
own Shippo-shaped webhooks, posted over HTTP to our endpoint, and the seller's emails arrive
at a real SMTP server, one per step."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from PIL import Image

from refit.settings import DEV_ADMIN_PASSWORD
from tests.auth.wallets import bearer, sign_in
from tests.dashboard.helpers import sign_in as dashboard_sign_in
from tests.notifications.smtp_server import smtp_server
from tests.orders.helpers import DEVICE
from tests.processes import ROOT, start_refit, stop_refit
from tests.processes import free_port as _free_port
from tests.shipping.conftest import HOME


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 90) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(600)
async def test_embedded_default_reaches_received_by_its_own_webhooks(tmp_path: Path) -> None:
    data_dir = ROOT / ".refit" / f"journey-{uuid.uuid4().hex[:8]}"
    port, ledger_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{port}"
    async with smtp_server() as smtp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REFIT_")}
        env.update(
            REFIT_DATA_DIR=str(data_dir),
            REFIT_PORT=str(port),
            REFIT_PUBLIC_URL=base,
            REFIT_SMTP_URL=smtp.url,
            REFIT_LOG_FORMAT="json",
            # The local ledger `refit run` starts, on its own port for this test.
            REFIT_LEDGER_PORT=str(ledger_port),
        )
        process = start_refit(["run"], env, tmp_path / "refit-run.log")
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:

                async def ready() -> bool:
                    assert process.poll() is None, (tmp_path / "refit-run.log").read_text()
                    try:
                        return (await http.get("/readyz")).status_code == 200
                    except httpx.HTTPError:
                        return False

                await _until(ready, "refit run to be ready", timeout=240)
                await _journey(http, smtp, data_dir, f"http://127.0.0.1:{ledger_port}")
            await _every_dashboard_page(base)
        finally:
            await stop_refit(process)
            shutil.rmtree(data_dir, ignore_errors=True)


async def _journey(http: httpx.AsyncClient, smtp: Any, data_dir: Path, ledger: str) -> None:
    signed_in = await sign_in(http)
    seller = bearer(signed_in["access_token"])

    # A verified address: the code comes by mail, through the same SMTP server.
    assert (
        await http.post("/api/auth/verify-email", json={"email": "ada@example.com"}, headers=seller)
    ).status_code == 202
    verify = await _until(
        lambda: _awaitable(_mail(smtp, "ada@example.com", "onfirm")), "the code mail"
    )
    code = re.search(r"enter this code in the app: (\S+)", verify.text())
    assert code is not None
    confirmed = await http.post(
        "/api/auth/verify-email/confirm", json={"token": code.group(1)}, headers=seller
    )
    assert confirmed.status_code == 200, confirmed.text

    address = await http.post("/api/shipping/addresses", json=HOME, headers=seller)
    assert address.status_code == 201, address.text
    offer = await http.post("/api/quotes", json=DEVICE, headers=seller)
    assert offer.status_code == 201, offer.text
    created = await http.post(
        "/api/orders/create",
        json={"quote_id": offer.json()["quote_id"], "shipping_address_id": address.json()["id"]},
        headers=seller,
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    rates = await http.post("/api/shipping/rates", json={"order_id": order_id}, headers=seller)
    assert rates.status_code == 200, rates.text
    bought = await http.post(
        "/api/shipping/purchase-label",
        json={"order_id": order_id, "rate_id": rates.json()["rates"][0]["rate_id"]},
        headers=seller,
    )
    assert bought.status_code == 202, bought.text

    async def status_is(wanted: str) -> bool:
        order = await http.get(f"/api/orders/{order_id}", headers=seller)
        return bool(order.json()["status"] == wanted)

    await _until(lambda: status_is("awaiting_shipment"), "the label")

    # The warehouse's scan, pushed on the sandbox: it tells us by webhook, as Shippo would.
    # `refit run` on the embedded default made the `admin` operator with the dev password.
    login = await http.post(
        "/api/admin/login", json={"username": "admin", "password": DEV_ADMIN_PASSWORD}
    )
    assert login.status_code == 200, login.text
    operator = bearer(login.json()["access_token"])
    pushed = await http.post(
        f"/api/admin/orders/{order_id}/sandbox-tracking",
        json={"status": "DELIVERED"},
        headers=operator,
    )
    assert pushed.status_code == 204, pushed.text
    await _until(lambda: status_is("received"), "the webhook to move the order")

    tracking = (await http.get(f"/api/orders/{order_id}/tracking", headers=seller)).json()
    assert [e["status"] for e in tracking["events"]] == ["PRE_TRANSIT", "TRANSIT", "DELIVERED"]
    detail = (await http.get(f"/api/orders/{order_id}", headers=seller)).json()
    assert [(h["from_status"], h["status"], h["actor"]) for h in detail["status_history"]][3:] == [
        # The seller sees "system"; who exactly is in the operators' view (and checked below).
        ("awaiting_shipment", "shipped", "system"),
        ("shipped", "received", "system"),
    ]

    # One email per step: label ready (with the label), in transit, delivered.
    async def order_mails() -> list[Any] | None:
        mails = [m for m in smtp.messages if "onfirm" not in str(m.message["Subject"])]
        return mails if len(mails) >= 3 else None

    mails = await _until(order_mails, "the three order emails")

    def mail_log() -> list[tuple[Any, ...]]:
        with psycopg.connect(_conninfo(data_dir)) as conn:
            return conn.execute(
                "SELECT template, count(*), count(sent_at) FROM outbound_emails "
                "WHERE template LIKE 'order_%' GROUP BY template ORDER BY template"
            ).fetchall()

    # The send job marks each row sent in its own transaction just after the SMTP server
    # accepted the message: wait for the marks, not only for the messages.
    sent = await _until(
        lambda: _awaitable(next((log for log in [mail_log()] if all(r[2] for r in log)), None)),
        "the mail log to record the sends",
    )
    with psycopg.connect(_conninfo(data_dir)) as conn:
        inbox = conn.execute(
            "SELECT event, outcome FROM webhook_inbox WHERE processed_at IS NOT NULL"
        ).fetchall()
        actors = conn.execute(
            "SELECT status, actor FROM order_status_history WHERE order_id = %s "
            "AND status IN ('shipped', 'received') ORDER BY created_at",
            (order_id,),
        ).fetchall()
    assert actors == [
        ("shipped", "system:carrier-tracking"),
        ("received", "system:carrier-tracking"),
    ]
    assert sent == [
        ("order_label_ready", 1, 1),
        ("order_received", 1, 1),
        ("order_shipped", 1, 1),
    ]
    assert len(mails) == 3 and all(m.rcpt_tos == ["ada@example.com"] for m in mails)
    attachments = [part.get_filename() for m in mails for part in m.message.iter_attachments()]
    assert len(attachments) == 1 and attachments[0].endswith(".pdf")
    # The webhook came in and did the move (the sandbox delivered its track over HTTP).
    assert any(
        event == "track_updated" and "moved to received" in outcome for event, outcome in inbox
    )
    await _inspect_decline_and_return(http, smtp, data_dir, seller, operator, order_id)
    await _inspect_as_quoted_and_pay(
        http, seller, operator, address.json()["id"], signed_in["user"]["wallet_address"], ledger
    )


async def _inspect_decline_and_return(
    http: httpx.AsyncClient,
    smtp: Any,
    data_dir: Path,
    seller: dict[str, str],
    operator: dict[str, str],
    order_id: str,
) -> None:
    """Issue 11 on the embedded default: inspected below the quote with a photo, the seller
    sees the revised offer and declines, the real worker buys the insured label home, and the
    sandbox's delivery webhook for the return parcel ends the order cancelled."""
    started = await http.post(f"/api/admin/orders/{order_id}/inspection/start", headers=operator)
    assert started.status_code == 200, started.text
    photo = io.BytesIO()
    Image.new("RGB", (48, 32), (120, 40, 40)).save(photo, "JPEG")
    uploaded = await http.post(
        f"/api/admin/orders/{order_id}/evidence",
        files=[("photos", ("back.jpg", photo.getvalue(), "image/jpeg"))],
        headers=operator,
    )
    assert uploaded.status_code == 201, uploaded.text
    verdict = await http.post(
        f"/api/admin/orders/{order_id}/inspect",
        json={
            "grade": "fair",
            "imei": "490154203237518",
            "checklist": {
                "powers_on": True,
                "activation_lock_off": True,
                "screen": "scratched",
                "battery_health_pct": 84,
            },
            "notes": "Deep scratch across the back glass.",
        },
        headers=operator,
    )
    assert verdict.status_code == 200, verdict.text
    order = (await http.get(f"/api/orders/{order_id}", headers=seller)).json()
    assert order["status"] == "offer_pending"
    assert order["inspection"]["notes"] == "Deep scratch across the back glass."
    [photo_url] = order["inspection"]["photos"]
    opened = await http.get(photo_url)
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/jpeg"

    declined = await http.post(f"/api/orders/{order_id}/offer/decline", headers=seller)
    assert declined.status_code == 200, declined.text

    def return_row() -> tuple[Any, ...] | None:
        with psycopg.connect(_conninfo(data_dir)) as conn:
            return conn.execute(
                "SELECT status, tracking_number, insured_usd, label_file_key "
                "FROM shipping_returns WHERE order_id = %s",
                (order_id,),
            ).fetchone()

    bought = await _until(
        lambda: _awaitable(r if (r := return_row()) and r[0] == "purchased" else None),
        "the return label",
    )
    assert bought[1] and bought[2] > 0 and bought[3]
    pushed = await http.post(
        f"/api/admin/orders/{order_id}/sandbox-tracking",
        json={"status": "DELIVERED", "leg": "return"},
        headers=operator,
    )
    assert pushed.status_code == 204, pushed.text

    async def cancelled() -> bool:
        got = await http.get(f"/api/orders/{order_id}", headers=seller)
        return bool(got.json()["status"] == "cancelled")

    await _until(cancelled, "the return delivery webhook to cancel the order")

    wanted = ["order_cancelled", "order_offer_pending", "order_return_label", "order_returning"]

    def later_mails() -> list[tuple[Any, ...]]:
        with psycopg.connect(_conninfo(data_dir)) as conn:
            return conn.execute(
                "SELECT template, count(*), count(sent_at) FROM outbound_emails "
                "WHERE template = ANY(%s) GROUP BY template ORDER BY template",
                (wanted,),
            ).fetchall()

    mails = await _until(
        lambda: _awaitable(
            m if len(m := later_mails()) == len(wanted) and all(r[2] for r in m) else None
        ),
        "one email per step home",
    )
    assert mails == [(name, 1, 1) for name in wanted]


async def _inspect_as_quoted_and_pay(
    http: httpx.AsyncClient,
    seller: dict[str, str],
    operator: dict[str, str],
    address_id: str,
    wallet: str,
    ledger: str,
) -> None:
    """Issue 12 on the embedded default: quote → order → label → webhooks → received →
    inspected as quoted → paid by the real worker from the dev treasury on the local ledger →
    completed, and the ledger's getBalance shows the seller paid."""
    offer = await http.post("/api/quotes", json=DEVICE, headers=seller)
    assert offer.status_code == 201, offer.text
    created = await http.post(
        "/api/orders/create",
        json={"quote_id": offer.json()["quote_id"], "shipping_address_id": address_id},
        headers=seller,
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    rates = await http.post("/api/shipping/rates", json={"order_id": order_id}, headers=seller)
    bought = await http.post(
        "/api/shipping/purchase-label",
        json={"order_id": order_id, "rate_id": rates.json()["rates"][0]["rate_id"]},
        headers=seller,
    )
    assert bought.status_code == 202, bought.text

    async def status_is(wanted: str) -> bool:
        got = await http.get(f"/api/orders/{order_id}", headers=seller)
        return bool(got.json()["status"] == wanted)

    await _until(lambda: status_is("awaiting_shipment"), "the second label")
    pushed = await http.post(
        f"/api/admin/orders/{order_id}/sandbox-tracking",
        json={"status": "DELIVERED"},
        headers=operator,
    )
    assert pushed.status_code == 204, pushed.text
    await _until(lambda: status_is("received"), "the second parcel's webhook")
    started = await http.post(f"/api/admin/orders/{order_id}/inspection/start", headers=operator)
    assert started.status_code == 200, started.text
    verdict = await http.post(
        f"/api/admin/orders/{order_id}/inspect",
        json={
            "grade": DEVICE["device_condition"],
            "imei": "490154203237518",
            "checklist": {
                "powers_on": True,
                "activation_lock_off": True,
                "screen": "ok",
                "battery_health_pct": 93,
            },
            "notes": "As described.",
        },
        headers=operator,
    )
    assert verdict.status_code == 200, verdict.text
    paid = await http.post(f"/api/admin/orders/{order_id}/pay", headers=operator)
    assert paid.status_code == 202, paid.text
    await _until(lambda: status_is("completed"), "the payout to finalize", timeout=180)

    order = (await http.get(f"/api/orders/{order_id}", headers=seller)).json()
    payout = order["payout"]
    assert payout["status"] == "finalized" and payout["signature"] == order["payment_tx_signature"]
    assert order["final_price_usd"] == order["quoted_price_usd"]
    async with httpx.AsyncClient(timeout=10) as rpc:
        answer = await rpc.post(
            ledger,
            json={"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": [wallet]},
        )
    # The seller's wallet held nothing before: its balance is exactly this payout.
    assert answer.json()["result"]["value"] == payout["lamports"] > 0


async def _every_dashboard_page(base: str) -> None:
    """Issue 13: the dashboard of `refit run` on the embedded default, signed in as the dev
    operator through its own form, serves every page, the journey's paid order included."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as browser:
        signed_in = await dashboard_sign_in(browser, "admin", DEV_ADMIN_PASSWORD)
        assert signed_in.status_code == 303, signed_in.text
        queue = await browser.get("/admin/?status=completed")
        assert queue.status_code == 200, queue.text
        paid = re.search(r'href="(/admin/orders/[0-9a-f-]{36})"', queue.text)
        assert paid is not None, "the journey's completed order is in the queue"
        pages = {
            "/admin/": 'id="q"',
            paid.group(1): "finalized",
            "/admin/payouts": 'id="treasury-balance"',
            "/admin/numbers": 'id="orders-per-day"',
            "/admin/operators": 'data-username="admin"',
            "/admin/outbox": "<h1",
        }
        for path, key in pages.items():
            page = await browser.get(path)
            assert page.status_code == 200, (path, page.text[:500])
            assert key in page.text, path


def _mail(smtp: Any, recipient: str, subject_part: str) -> Any:
    for message in smtp.messages:
        if recipient in message.rcpt_tos and subject_part in str(message.message["Subject"]):
            return message
    return None


async def _awaitable(value: Any) -> Any:
    return value


def _conninfo(data_dir: Path) -> str:
    # postmaster.pid's fifth line is the socket directory of the running server.
    lines = (data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
    return f"host={lines[4]} user=postgres dbname=postgres"
