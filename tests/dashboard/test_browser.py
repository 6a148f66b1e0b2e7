"""Done-when 1: in a real browser, an admin signs in, finds an order by its number, receives
it, inspects it with a photo, pays it, and sees it completed with the transaction's
signature. The app is served by uvicorn on a free loopback port in this process; the payout
is made by a real worker against the local ledger. A screenshot of each page is kept under
test-artifacts/dashboard/."""

from __future__ import annotations

import io
import re
import secrets

import httpx
import pytest
from PIL import Image
from playwright.async_api import Page, async_playwright, expect
from solders.keypair import Keypair

from refit.dashboard.render import STATUS_LABELS
from refit.models import OrderStatus
from refit.resources import Resources
from tests.admin.helpers import make_operator
from tests.inspection.helpers import IMEI
from tests.orders.helpers import place_order
from tests.payouts.conftest import (  # noqa: F401
    as_quoted_order,
    balance,
    order_row,
    pay,
    paying,
    payout_row,
    transfers_for,
)
from tests.payouts.test_recovery import LAMPORTS, _events, _landed_with_an_error
from tests.processes import ROOT
from tests.serving import serving
from tests.shipping.helpers import buy
from tests.shipping.helpers import quote as rates

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"


def photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (40, 120, 200)).save(out, "JPEG")
    return out.getvalue()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def labelled_order(http: httpx.AsyncClient, resources: Resources, make_user, run_jobs):
    """A seller with a real wallet, a quote, an order and its sandbox label, bought through
    the seller's API and the label job: awaiting_shipment."""
    wallet = Keypair()
    seller = await make_user(wallet_address=str(wallet.pubkey()))
    order = await place_order(http, resources, seller)
    bought = await buy(
        http, seller, order["id"], (await rates(http, seller, order["id"]))[0]["rate_id"]
    )
    assert bought.status_code in (200, 202), bought.text
    await run_jobs()
    row = await order_row(resources, order["id"])
    assert row.status in (OrderStatus.AWAITING_SHIPMENT, OrderStatus.SHIPPED), row.status
    assert row.tracking_number
    return order, wallet


@pytest.mark.timeout(180)
async def test_an_admin_takes_an_order_from_its_parcel_to_paid_in_a_browser(
    resources,
    make_user,
    run_jobs,
    paying,  # noqa: F811
):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    admin = await make_operator(resources, "admin", password=password)
    async with serving(resources) as base, httpx.AsyncClient(base_url=base) as http:
        order, wallet = await labelled_order(http, resources, make_user, run_jobs)
        number = order["order_number"]
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                # Tablet width.
                page = await browser.new_page(viewport={"width": 820, "height": 1180})
                page.set_default_timeout(15_000)
                await page.goto(f"{base}/admin/")
                await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
                await shot(page, "01-sign-in")
                await page.get_by_label("Username").fill(admin.username)
                await page.get_by_label("Password").fill(password)
                await page.get_by_label("Password").press("Enter")
                await expect(page.get_by_role("heading", name="Queue")).to_be_visible()
                await shot(page, "02-queue")

                await page.get_by_label("Search").fill(number)
                await page.get_by_label("Search").press("Enter")
                await expect(page.get_by_role("link", name=number)).to_have_count(1)
                await shot(page, "03-search")
                await page.get_by_role("link", name=number).click()
                current = (await order_row(resources, order["id"])).status
                await expect(page.locator("#order-status")).to_have_text(STATUS_LABELS[current])
                await shot(page, "04-order")

                await page.get_by_role("button", name="Mark received").click()
                await expect(page.locator("#done")).to_have_text(
                    "Marked as received at the warehouse."
                )
                await expect(page.locator("#order-status")).to_have_text("Received")
                await page.get_by_role("button", name="Start inspection").click()
                await expect(page.locator("#order-status")).to_have_text("Inspecting")
                await page.get_by_role("link", name="Inspect").click()

                await page.get_by_role("radio", name="Flawless").check()
                # Nothing is pre-ticked: the two answers the verdict needs, and the screen.
                powers_on = page.get_by_role("group", name=re.compile("^Powers on"))
                await powers_on.get_by_label("Yes", exact=True).check()
                lock = page.get_by_role("group", name=re.compile("^Activation lock"))
                await lock.get_by_label("Yes", exact=True).check()
                await page.get_by_label("Screen").select_option("ok")
                await page.get_by_label("IMEI (15 digits)").fill(IMEI)
                await page.get_by_label("Notes").fill("Like new, boxed.")
                await page.get_by_label("Take or choose photos").set_input_files(
                    {"name": "front.jpg", "mimeType": "image/jpeg", "buffer": photo()}
                )
                # The price the verdict will give, before it is given.
                await expect(page.locator("#price-preview")).to_contain_text(
                    "Price: $442.00, as quoted"
                )
                await shot(page, "05-inspect")
                # By keyboard: after a full-page screenshot of this long form, Chromium's page
                # was seen 43 px shorter between a mouse click's down and up, so the click
                # landed on the form and sent nothing.
                await page.get_by_role("button", name="Give the verdict").press("Enter")
                await expect(page.locator("#done")).to_have_text("Verdict recorded.")
                await expect(page.locator("#inspection-outcome")).to_have_text("As quoted")
                evidence = page.get_by_role("img", name="Evidence photo 1 (320\u00d7240)")
                await expect(evidence).to_be_visible()
                # The photo loads through its signed URL (a broken image has no width); it is
                # lazy-loaded, so it loads once scrolled to.
                await evidence.scroll_into_view_if_needed()
                await expect(evidence).to_have_js_property("naturalWidth", 320)
                await shot(page, "06-inspected")

                await page.get_by_role("button", name="Pay $442.00 in SOL").click()
                await expect(page.locator("#done")).to_contain_text("Payout requested")
                await expect(page.locator("#payout-status")).to_have_text("Paying")
                await shot(page, "07-pay-requested")

                # The worker signs, sends and waits for finality on the local ledger.
                await run_jobs()
                payout = await payout_row(resources, order["id"])
                assert payout.status == "finalized" and payout.signature

                await page.reload()
                await expect(page.locator("#order-status")).to_have_text("Completed")
                await expect(page.locator("#payout-status")).to_have_text("Paid")
                await expect(page.locator("#tx-signature")).to_have_text(payout.signature)
                history = page.locator("table.history")
                await expect(history).to_contain_text(admin.username)
                await expect(history).to_contain_text("system:payouts")
                await shot(page, "08-completed")

                await page.get_by_role("link", name="Payouts").click()
                await expect(page.locator("#sent-today")).to_contain_text(number)
                await shot(page, "09-payouts")
                await page.get_by_role("link", name="Numbers").click()
                await expect(page.locator("#funnel")).to_be_visible()
                await shot(page, "10-numbers")
            finally:
                await browser.close()
    completed = await order_row(resources, order["id"])
    assert completed.status is OrderStatus.COMPLETED
    assert completed.payment_tx_signature == payout.signature
    assert payout.recipient == str(wallet.pubkey())


@pytest.mark.timeout(180)
async def test_an_admin_retries_a_failed_payout_in_a_browser_and_the_seller_is_paid_once(
    client,
    resources,
    make_user,
    run_jobs,
    paying,  # noqa: F811
):
    """Done-when 3, once through the dashboard: a payout whose transfer landed with an error on
    the local ledger is shown failed; an admin clicks retry; the job pays; one transfer moved
    the SOL (the failed one moved nothing)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    admin = await make_operator(resources, "admin", password=password)
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    # $442, under the per-payout cap: one admin may retry it.
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    failed_signature = await _landed_with_an_error(resources, paying, order_id, wallet)
    await run_jobs()
    assert (await payout_row(resources, order_id)).status == "failed"
    number = (await order_row(resources, order_id)).order_number

    async with serving(resources) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 820, "height": 1180})
            page.set_default_timeout(15_000)
            await page.goto(f"{base}/admin/payouts")
            await page.get_by_label("Username").fill(admin.username)
            await page.get_by_label("Password").fill(password)
            await page.get_by_label("Password").press("Enter")
            failed = page.locator("#failed")
            await expect(failed.get_by_role("button", name="Retry payout")).to_have_count(1)
            await shot(page, "11-payout-failed")
            await failed.get_by_role("link", name=number).click()
            await expect(page.locator("#payout-status")).to_have_text("Payout failed")
            await expect(page.locator("#payout-state")).to_contain_text(
                "an admin must retry or cancel"
            )
            await page.get_by_role("button", name="Retry payout").click()
            await expect(page.locator("#done")).to_contain_text("Payout retried")
            await expect(page.locator("#payout-status")).to_have_text("Paying")
            await shot(page, "12-payout-retried")

            await run_jobs()
            await page.reload()
            await expect(page.locator("#payout-status")).to_have_text("Paid")
            await expect(page.locator("#order-status")).to_have_text("Completed")
            await shot(page, "13-payout-paid")
        finally:
            await browser.close()
    paid = await payout_row(resources, order_id)
    assert paid.status == "finalized" and paid.signature != failed_signature
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
    on_chain = await transfers_for(paying.ledger, paid.reference)
    assert sorted(on_chain) == sorted([failed_signature, paid.signature])
    assert ("failed", "pending", f"operator:{admin.id}") in await _events(resources, paid.id)
