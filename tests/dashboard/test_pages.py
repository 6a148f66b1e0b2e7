"""Done-when 4: every page of the dashboard answers an admin with its page and its key
element; the queue finds an order by number, wallet, tracking number and email."""

from __future__ import annotations

import re
import uuid
from email.message import EmailMessage

from refit.notifications.senders import OutboxSender
from tests.dashboard.helpers import signed_in_operator
from tests.inspection.helpers import inspecting_order, operator, shipped_order


async def test_every_page_answers_an_admin(client, resources, settings, make_user):
    seller = await make_user(email=f"ada-{uuid.uuid4().hex[:6]}@example.com")
    waiting = await shipped_order(client, resources, seller)
    inspector = await operator(resources, "inspector")
    inspecting = await inspecting_order(client, resources, await make_user(), inspector)
    message = EmailMessage()
    message["Subject"], message["To"] = "Your label is ready", "ada@example.com"
    message["From"] = settings.mail_from
    message.set_content("Print it and ship the device.")
    message.add_alternative("<p>Print it and <b>ship</b> the device.</p>", subtype="html")
    await OutboxSender(settings.outbox_dir).send(message, key="label-ready-1")
    admin, _ = await signed_in_operator(resources, client, "admin")

    pages = {
        "/admin/": 'id="q"',
        "/admin/?status=awaiting_shipment": "awaiting_shipment",
        f"/admin/orders/{waiting}": 'id="history-title"',
        f"/admin/orders/{inspecting}/inspect": 'accept="image/*" capture',
        "/admin/payouts": 'id="treasury-balance"',
        "/admin/numbers": 'id="orders-per-day"',
        "/admin/operators": f'data-username="{admin.username}"',
        "/admin/outbox": "Your label is ready",
        "/admin/outbox/label-ready-1": "Print it and ship the device.",
    }
    for path, key in pages.items():
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert "text/html" in response.headers["content-type"], path
        assert key in response.text, path
        assert response.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert (await client.get("/admin/static/dashboard.css")).status_code == 200
    assert (await client.get("/admin/outbox/..%2Fsecrets")).status_code == 404


async def test_the_queue_finds_an_order_by_what_a_person_has_in_hand(client, resources, make_user):
    email = f"grace-{uuid.uuid4().hex[:6]}@example.com"
    seller = await make_user(wallet_address=f"Wa11et{uuid.uuid4().hex}", email=email)
    order_id = await shipped_order(client, resources, seller)
    other = await shipped_order(client, resources, await make_user())
    await signed_in_operator(resources, client, "inspector")

    page = (await client.get(f"/admin/orders/{order_id}")).text
    number = re.search(r"ORD-\d{4}-\d{6}", page)
    assert number
    for term in (number.group(0), number.group(0).lower(), email.upper(), "Wa11et"):
        found = await client.get("/admin/", params={"q": term})
        assert found.status_code == 200
        assert f"/admin/orders/{order_id}" in found.text, term
        assert f"/admin/orders/{other}" not in found.text, term
    # Counts per status; labels waiting for the seller to ship are not the warehouse's work.
    queue = (await client.get("/admin/")).text
    assert 'data-status="awaiting_shipment">Awaiting shipment (2)</option>' in queue
    assert f"/admin/orders/{order_id}" not in queue
    waiting = (await client.get("/admin/", params={"status": "awaiting_shipment"})).text
    assert f"/admin/orders/{order_id}" in waiting and f"/admin/orders/{other}" in waiting
