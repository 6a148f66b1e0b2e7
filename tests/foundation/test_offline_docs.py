"""/docs and /redoc work with no network: a real browser, every request to a host that is not
this machine refused, loads them from a running API and sees the operations listed. FastAPI's
own pages load Swagger UI and ReDoc from a CDN, and offline show nothing."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Page, Route, async_playwright, expect

from refit.resources import Resources
from tests.serving import serving

CHROMIUM = "/usr/bin/chromium"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


async def _offline(page: Page) -> list[str]:
    """Refuse every request that would leave this machine; the list of those refused."""
    refused: list[str] = []

    async def route(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and (
            urlsplit(url).hostname not in LOOPBACK
        ):
            refused.append(url)
            await route.abort("internetdisconnected")
        else:
            await route.continue_()

    await page.route("**/*", route)
    return refused


def _operations(document: dict) -> list[tuple[str, str, dict]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete", "patch")
    ]


# expect()'s own default wait is 5 s, the page's timeout aside: ReDoc lays out every operation
# before it shows one, which took longer than that on a loaded 2-core machine.
LOADED = 30_000


@pytest.mark.timeout(120)
async def test_swagger_ui_and_redoc_list_the_operations_with_no_network(resources: Resources):
    async with serving(resources) as base, httpx.AsyncClient(base_url=base) as http:
        document = (await http.get("/openapi.json")).json()
        operations = _operations(document)
        assert len(operations) > 40
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = await browser.new_page()
                page.set_default_timeout(30_000)
                refused = await _offline(page)

                await page.goto(f"{base}/docs")
                # Swagger UI renders one block per operation, the order read among them.
                read = page.locator("#operations-orders-orders-get_order")
                await expect(read).to_be_visible(timeout=LOADED)
                await expect(read).to_contain_text("/api/orders/{order_id}", timeout=LOADED)
                await expect(page.locator(".opblock")).to_have_count(
                    len(operations), timeout=LOADED
                )
                await expect(page.locator(".info .title")).to_contain_text(
                    "ReFit API", timeout=LOADED
                )
                # Swagger UI asked nothing of the outside.
                assert refused == []

                await page.goto(f"{base}/redoc")
                # ReDoc's menu and sections, one per operation.
                section = page.locator('[data-section-id="operation/orders-get_order"]')
                await expect(section).to_be_attached(timeout=LOADED)
                await expect(section).to_contain_text("/api/orders/{order_id}", timeout=LOADED)
                sections = page.locator('[data-section-id^="operation/"]')
                await expect(sections).to_have_count(len(operations), timeout=LOADED)

                # ReDoc's menu footer always tries Redocly's logo from their CDN, and drops
                # the image when it fails (the text link stays); nothing else went out.
                assert set(refused) <= {REDOCLY_LOGO}
            finally:
                await browser.close()


async def test_the_assets_are_served_by_the_api(resources: Resources):
    async with serving(resources) as base, httpx.AsyncClient(base_url=base) as http:
        page = (await http.get("/docs")).text
        assert "cdn." not in page and "https://" not in page
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            assert f"/docs/assets/{asset}" in page + (await http.get("/redoc")).text
            served = await http.get(f"/docs/assets/{asset}")
            assert served.status_code == 200
            assert len(served.content) > 100_000
        assert (await http.get("/docs/assets/favicon.png")).status_code == 200
