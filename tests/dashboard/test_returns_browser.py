"""Done-when 2 of issue 24, in a real browser at tablet size: an admin sends a device home from
its order page, prints the label home (the PDF served), marks the parcel handed to the
carrier, and the sandbox carrier's delivery webhook ends the order cancelled; a failed label
is retried and a cancelled order's label refunded from their buttons. Every move names the
admin, on the order page and in the database. One browser for the module."""

from __future__ import annotations

import secrets

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect
from sqlalchemy import select

from refit.models import OrderStatus
from refit.models.shipping import ReturnShipment
from tests.admin.helpers import bearer_for, make_operator
from tests.dashboard.returns_setup import (
    REFUND,
    jobs,
    label_bought,
    label_failed,
    offer_pending,
    trail,
)
from tests.dashboard.test_browser import ARTIFACTS, CHROMIUM, shot
from tests.serving import serving
from tests.shipping.helpers import history, order_row


async def expect_code(page: Page, where: str, code: str) -> None:
    """The status shown at `where` is `code` (the page shows its label, the code rides along)."""
    await expect(page.locator(where)).to_have_attribute("data-status", code)


async def _open(page: Page, base: str, order_id) -> None:
    await page.goto(f"{base}/admin/orders/{order_id}")


async def _home(resources, order_id) -> ReturnShipment:
    async with resources.sessionmaker() as session:
        row = await session.scalar(
            select(ReturnShipment).where(ReturnShipment.order_id == order_id)
        )
    assert row is not None
    return row


@pytest.mark.timeout(120)
async def test_a_return_is_finished_and_labels_are_mended_from_the_order_page(
    resources, settings, make_user, run_jobs
):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    admin = await make_operator(resources, "admin", password=password)
    actor = f"operator:{admin.id}"
    async with serving(resources) as base, httpx.AsyncClient(base_url=base) as http:
        # The sandbox's push job posts its webhooks to this server.
        settings.public_url = base
        going_home = await offer_pending(http, resources, make_user)
        failed = await label_failed(http, resources, make_user)
        labelled = await label_bought(http, resources, make_user, run_jobs)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 820, "height": 1180})
                page.set_default_timeout(10_000)
                await _open(page, base, going_home.id)
                await page.get_by_label("Username").fill(admin.username)
                await page.get_by_label("Password").fill(password)
                await page.get_by_label("Password").press("Enter")
                await expect_code(page, "#order-status", "offer_pending")

                # Home: the seller's no, by phone; the worker buys the insured label home.
                await page.get_by_role("button", name="Send the device home").click()
                await expect_code(page, "#order-status", "returning")
                await run_jobs()
                await page.reload()
                await expect_code(page, "#return-status", "purchased")
                link = page.get_by_role("link", name="Print the return label")
                printed = await page.request.get(base + (await link.get_attribute("href") or ""))
                assert printed.status == 200
                assert printed.headers["content-type"] == "application/pdf"
                assert (await printed.body()).startswith(b"%PDF")

                await page.get_by_role("button", name="Handed to the carrier").click()
                await expect(page.locator("#done")).to_have_text("Marked as handed to the carrier.")
                await expect(page.locator("#handed-over")).to_contain_text(admin.username)
                handed = page.get_by_role("button", name="Handed to the carrier")
                await expect(handed).to_have_count(0)
                await shot(page, "20-return-handed-over")

                # The sandbox carrier delivers it home and says so by webhook, over HTTP.
                pushed = await http.post(
                    f"/api/admin/orders/{going_home.id}/sandbox-tracking",
                    json={"status": "DELIVERED", "leg": "return"},
                    headers=bearer_for(resources, admin),
                )
                assert pushed.status_code == 204, pushed.text
                await run_jobs()
                await page.reload()
                await expect_code(page, "#order-status", "cancelled")
                await expect_code(page, "#return-status", "delivered")
                await expect(page.locator("table.history")).to_contain_text(admin.username)
                await expect(page.locator("#label-trail")).to_contain_text(
                    "Parcel home handed to the carrier"
                )
                await shot(page, "21-return-delivered")

                # A label the job gave up on, retried from its button.
                await _open(page, base, failed.id)
                await page.get_by_role("button", name="Retry the label").click()
                await expect(page.locator("#done")).to_contain_text("Label purchase queued again")
                await run_jobs()
                await page.reload()
                await expect_code(page, "#order-status", "awaiting_shipment")
                await expect(page.locator("#label-trail")).to_contain_text(admin.username)
                await shot(page, "22-label-retried")

                # A cancelled order's label, refunded from its button; then nothing is left.
                await _open(page, base, labelled.id)
                await page.get_by_label("Reason").fill("seller changed their mind")
                await page.get_by_role("button", name="Cancel order").click()
                await expect_code(page, "#order-status", "cancelled")
                await page.get_by_role("button", name="Refund the label").click()
                await expect(page.locator("#done")).to_contain_text("Label refund queued")
                await run_jobs()
                await page.get_by_role("button", name="Refund the label").click()
                await expect(page.locator("#refused")).to_contain_text("no label left to refund")
                await expect(page.locator("#label-trail")).to_contain_text("Label refund asked")
                await shot(page, "23-label-refunded")
            finally:
                await browser.close()

    # The database: each move by the admin.
    assert (await order_row(resources, going_home.id)).status is OrderStatus.CANCELLED
    home = await _home(resources, going_home.id)
    assert home.status == "delivered" and home.handed_over_by == actor
    moves = await history(resources, going_home.id)
    assert (OrderStatus.OFFER_PENDING, OrderStatus.RETURNING, actor) in moves
    assert moves[-1][:2] == (OrderStatus.RETURNING, OrderStatus.CANCELLED)
    assert await trail(resources, going_home.id) == [("order.return_handed_over", actor)]
    assert await trail(resources, failed.id) == [("order.retry_label", actor)]
    assert await trail(resources, labelled.id) == [("order.refund_label", actor)]
    assert (await order_row(resources, failed.id)).status is OrderStatus.AWAITING_SHIPMENT
    assert await jobs(resources, REFUND, labelled.id) == ["succeeded"]
