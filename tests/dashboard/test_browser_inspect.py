"""Done-when 1 in a real browser at tablet size (820x1180): an inspector signs in, finds the
order from the queue, starts the inspection, and submits it with a wrong IMEI and a photo.
The browser's own check stops it first (the message by the IMEI field, nothing sent); sent
anyway, the server refuses it and the form comes back with the message by the IMEI field and
every other value and the photo still there; fixed with the keyboard alone, the verdict is
given and the order moves. Screenshots under test-artifacts/dashboard/."""

from __future__ import annotations

import io
import re
import secrets

import pytest
from PIL import Image
from playwright.async_api import Page, async_playwright, expect

from tests.admin.helpers import make_operator
from tests.inspection.helpers import BAD_IMEI, IMEI, shipped_order
from tests.payouts.conftest import order_row
from tests.processes import ROOT
from tests.serving import serving

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"


def photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (40, 160, 90)).save(out, "JPEG")
    return out.getvalue()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def group(page: Page, legend: str):  # type: ignore[no-untyped-def]
    return page.get_by_role("group", name=re.compile("^" + re.escape(legend)))


@pytest.mark.timeout(120)
async def test_a_refused_inspection_keeps_everything_typed_and_the_photo(
    client, resources, make_user
):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    inspector = await make_operator(resources, "inspector", password=password)
    order_id = await shipped_order(client, resources, await make_user())
    number = (await order_row(resources, order_id)).order_number

    async with serving(resources) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 820, "height": 1180})
            page.set_default_timeout(15_000)
            # The queue, searched for the order (a busy test database has many open orders).
            await page.goto(f"{base}/admin/?q={number}")
            await page.get_by_label("Username").fill(inspector.username)
            await page.get_by_label("Password").fill(password)
            await page.get_by_label("Password").press("Enter")
            # A link holding the order number: the queue's table row or its card alike.
            await page.locator("a[href*='/admin/orders/']").filter(has_text=number).first.click()
            await page.get_by_role("button", name="Mark received").click()
            await page.get_by_role("button", name="Start inspection").click()
            await page.get_by_role("link", name="Inspect", exact=True).click()

            form_url = f"{base}/admin/orders/{order_id}/inspect"
            await expect(page).to_have_url(form_url)
            # Nothing pre-chosen.
            await expect(group(page, "Powers on").get_by_label("Not checked")).to_be_checked()
            await expect(page.locator("input[name=grade]:checked")).to_have_count(0)
            # The grade by keyboard: into the group, then the arrow keys.
            await page.get_by_role("radio", name="Flawless").focus()
            await page.keyboard.press("ArrowDown")
            await page.keyboard.press("ArrowDown")
            await expect(page.get_by_role("radio", name="Fair")).to_be_checked()
            await group(page, "Powers on").get_by_label("Yes", exact=True).check()
            await group(page, "Activation lock").get_by_label("Yes", exact=True).check()
            await page.get_by_label("Screen").select_option("scratched")
            await page.get_by_label("Battery health (%)").fill("87")
            await group(page, "Cameras work").get_by_label("No", exact=True).check()
            await group(page, "Touchscreen responds").get_by_label("Yes", exact=True).check()
            await page.get_by_label("Notes").fill("Dent on the top corner.")
            await page.get_by_label("Take or choose photos").set_input_files(
                {"name": "corner.jpg", "mimeType": "image/jpeg", "buffer": photo()}
            )
            await expect(page.locator("#price-preview")).to_contain_text("a revised offer")

            # The browser's check: too short, then a wrong check digit; nothing is sent.
            imei = page.get_by_label("IMEI (15 digits)")
            await imei.fill("49015420323")
            await page.get_by_role("button", name="Give the verdict").click()
            await expect(page.locator("#imei-error")).to_contain_text("15 digits (this has 11")
            await imei.fill(BAD_IMEI)
            await page.get_by_role("button", name="Give the verdict").click()
            await expect(page.locator("#imei-error")).to_have_text(
                "The IMEI must be 15 digits with a valid check digit (Luhn)"
            )
            await expect(imei).to_have_attribute("aria-invalid", "true")
            await expect(imei).to_be_focused()
            await expect(page).to_have_url(form_url)
            assert await page.locator("#photos").evaluate("el => el.files.length") == 1

            # The server's check: form.submit() skips submit handlers, as a browser whose
            # script did not run would; the browser's rule is the server's, so no IMEI gets
            # past one and fails the other.
            async with page.expect_response(
                lambda r: r.url == form_url and r.request.method == "POST"
            ) as answer:
                await page.evaluate("document.getElementById('inspect-form').submit()")
            assert (await answer.value).status == 422
            await expect(page.locator("#form-problems")).to_be_visible()
            await expect(page.locator("#imei-error")).to_have_text(
                "The IMEI must be 15 digits with a valid check digit (Luhn)"
            )
            await expect(imei).to_have_value(BAD_IMEI)
            await expect(imei).to_have_attribute("aria-invalid", "true")
            await expect(imei).to_have_attribute("aria-describedby", "imei-error")
            await expect(imei).to_be_focused()
            # Every other value as it was typed.
            await expect(page.get_by_role("radio", name="Fair")).to_be_checked()
            await expect(group(page, "Powers on").get_by_label("Yes", exact=True)).to_be_checked()
            await expect(
                group(page, "Activation lock").get_by_label("Yes", exact=True)
            ).to_be_checked()
            await expect(group(page, "Cameras work").get_by_label("No", exact=True)).to_be_checked()
            await expect(
                group(page, "Touchscreen responds").get_by_label("Yes", exact=True)
            ).to_be_checked()
            await expect(
                group(page, "Buttons and switches").get_by_label("Not checked")
            ).to_be_checked()
            await expect(page.get_by_label("Screen")).to_have_value("scratched")
            await expect(page.get_by_label("Battery health (%)")).to_have_value("87")
            await expect(page.get_by_label("Notes")).to_have_value("Dent on the top corner.")
            # The photo is still there: shown, and held by id for the next submit.
            kept = page.get_by_role("img", name="Kept photo 1")
            await expect(kept).to_be_visible()
            assert await kept.evaluate("img => img.complete && img.naturalWidth") == 320
            await expect(page.locator("input[name=held_photos]")).to_have_count(1)
            await shot(page, "inspect-refused-tablet")

            # Fixed with the keyboard alone (the focus is in the IMEI field), sent with Enter.
            await page.keyboard.press("Control+A")
            await page.keyboard.type(IMEI)
            await expect(page.locator("#imei-error")).to_be_hidden()
            await page.keyboard.press("Enter")
            await expect(page.locator("#done")).to_have_text("Verdict recorded.")
            rows = page.locator("#checklist-rows")
            await expect(rows).to_contain_text("Cameras work (front and back)")
            await expect(rows).not_to_contain_text("True")
            evidence = page.get_by_role("img", name="Evidence photo 1 (320\u00d7240)")
            await expect(evidence).to_be_visible()
            await shot(page, "inspect-verdict-tablet")
        finally:
            await browser.close()

    moved = await order_row(resources, order_id)
    # Fair is below the quote of good: a revised offer the seller answers.
    assert moved.status == "offer_pending", moved.status
    assert str(moved.final_price_usd) == "338.00"
