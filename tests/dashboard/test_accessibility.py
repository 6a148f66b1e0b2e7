"""Done-when 4 and 6: every page of the dashboard, at tablet (820x1180) and desktop
(1366x900) size, has no serious or critical axe-core violation, and a full-page screenshot of
each is kept as test-artifacts/dashboard/<page>-<size>.png. axe-core is the npm package in
tests/browser (installed by `make test`), read from node_modules into the page: no CDN.

PAGES is every GET page of refit/dashboard, one line each; a new page route without its line
fails `test_every_dashboard_page_is_in_the_list`. One browser for the module, one context per
size."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import secrets
import uuid
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from solders.keypair import Keypair
from sqlalchemy import func, text, update

from refit import dashboard
from refit.models import Order, WebhookInbox
from refit.models.payout import Payout, PayoutStatus
from refit.notifications.senders import OutboxSender
from tests.admin.helpers import make_operator
from tests.inspection.helpers import inspecting_order, operator, shipped_order, verdict
from tests.processes import ROOT
from tests.serving import serving

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {"tablet": (820, 1180), "desktop": (1366, 900)}
# WCAG 2.2 A and AA, and axe's best practices; a violation of impact serious or critical fails.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
FAILING = {"serious", "critical"}


@dataclass(frozen=True)
class Screen:
    name: str  # of the screenshot: <name>-<size>.png
    route: str | None  # the dashboard route it renders, as refit/dashboard declares it
    url: str  # formatted with the seeded ids (see `seeded`)
    signed_in: bool = True
    status: int = 200


PAGES = [
    Screen("login", "/login", "/admin/login", signed_in=False),
    Screen("queue", "/", "/admin/"),
    Screen("queue-filtered", "/", "/admin/?status=awaiting_shipment&q=ORD"),
    Screen("order-awaiting-shipment", "/orders/{order_id}", "/admin/orders/{shipped}"),
    Screen("order-inspecting", "/orders/{order_id}", "/admin/orders/{inspecting}"),
    Screen(
        "order-payout-pending",
        "/orders/{order_id}",
        "/admin/orders/{paying}?done=pay_requested",  # with the flash of what was done
    ),
    Screen("order-payout-failed", "/orders/{order_id}", "/admin/orders/{failed}"),
    Screen("order-payout-over-cap", "/orders/{order_id}", "/admin/orders/{over_cap}"),
    Screen("inspect", "/orders/{order_id}/inspect", "/admin/orders/{inspecting}/inspect"),
    Screen("payouts", "/payouts", "/admin/payouts"),
    Screen("numbers", "/numbers", "/admin/numbers"),
    Screen("operators", "/operators", "/admin/operators"),
    Screen("outbox", "/outbox", "/admin/outbox"),
    Screen("outbox-message", "/outbox/{key}", "/admin/outbox/{message}"),
    Screen("flags", "/flags", "/admin/flags"),
    Screen("webhooks", "/webhooks", "/admin/webhooks"),
    Screen("jobs", "/jobs", "/admin/jobs"),
    Screen("audit", "/audit", "/admin/audit"),
    Screen("error-404", None, "/admin/no-such-page", status=404),
]
# GET routes that answer something other than a page.
NOT_PAGES = {
    "/orders/{order_id}/label": "the label PDF",
    "/orders/{order_id}/return-label": "the return label PDF",
    "/orders/{order_id}/held-photos/{name}": "a photo held by a refused inspection form",
}


def dashboard_get_routes() -> set[str]:
    """The GET routes of every router in refit/dashboard/*.py (read from the modules: the
    app's own route list holds its included routers, not their routes)."""
    found = set()
    for module in pkgutil.iter_modules(dashboard.__path__):
        for value in vars(importlib.import_module(f"refit.dashboard.{module.name}")).values():
            if isinstance(value, APIRouter):
                found |= {
                    value.prefix + route.path
                    for route in value.routes
                    if isinstance(route, APIRoute) and "GET" in route.methods
                }
    return found


def test_every_dashboard_page_is_in_the_list():
    gets = dashboard_get_routes()
    assert {"/", "/login", "/orders/{order_id}"} <= gets
    listed = {screen.route for screen in PAGES} | set(NOT_PAGES)
    missing = sorted(gets - listed)
    assert not missing, f"GET routes without a line in PAGES (or NOT_PAGES): {missing}"
    assert not (listed - gets - {None}), "PAGES names a route the dashboard no longer has"


async def seeded(client, resources, settings, make_user) -> dict[str, str]:
    """Orders in the states whose pages differ (awaiting shipment, inspecting, a payout
    pending, failed and over the cap) and a message in the outbox: every page with content."""
    settings.treasury_pubkey = str(Keypair().pubkey())
    inspector = await operator(resources, "inspector")
    admin = await operator(resources, "admin")
    seller = await make_user(email=f"ada-{uuid.uuid4().hex[:6]}@example.com")
    ids = {
        "shipped": await shipped_order(client, resources, seller),
        "inspecting": await inspecting_order(client, resources, seller, inspector),
    }
    for name, cap in (("paying", 2000), ("failed", 2000), ("over_cap", 100)):
        order_id = await inspecting_order(client, resources, await make_user(), inspector)
        inspected = await client.post(
            f"/api/admin/orders/{order_id}/inspect",
            json=verdict(grade="flawless"),
            headers=inspector.headers,
        )
        assert inspected.status_code == 200, inspected.text
        settings.payout_max_usd = Decimal(cap)
        paid = await client.post(f"/api/admin/orders/{order_id}/pay", headers=admin.headers)
        assert paid.status_code == 202, paid.text
        ids[name] = order_id
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Payout)
            .where(Payout.order_id == uuid.UUID(ids["failed"]))
            .values(status=PayoutStatus.FAILED, error="the transfer landed with an error")
        )
        await session.execute(
            update(Order)
            .where(Order.id == uuid.UUID(ids["shipped"]))
            .values(attention_reason="no carrier scan for 7 days", attention_at=func.now())
        )
    # A webhook given up and a failed job: the on-call pages with rows (and their buttons).
    async with resources.sessionmaker() as session, session.begin():
        session.add(
            WebhookInbox(
                provider="shippo",
                event="track_updated",
                dedupe_key=f"a11y-{uuid.uuid4().hex}",
                body={"data": {"tracking_number": "SHIPPO_TRANSIT"}},
                error="gave up after 8 attempts",
                attempts=8,
                last_error="no label recorded for this tracking number",
                last_attempt_at=func.now(),
            )
        )
        await session.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)"
                " VALUES ('default', 'notifications.send_email', '{\"key\": \"a11y\"}',"
                " 'failed', 3)"
            )
        )
    message = EmailMessage()
    message["Subject"], message["To"] = "Your label is ready", "ada@example.com"
    message["From"] = settings.mail_from
    message.set_content("Print it and ship the device.")
    message.add_alternative("<p>Print it and <b>ship</b> the device.</p>", subtype="html")
    await OutboxSender(settings.outbox_dir).send(message, key="label-ready-1")
    ids["message"] = "label-ready-1"
    return ids


async def axe(page: Page) -> list[dict[str, Any]]:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        """options => axe.run(document, options).then(r => r.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))
        })))""",
        # A mail's own HTML sits in a sandboxed iframe axe cannot enter (and is not ours).
        {
            "runOnly": {"type": "tag", "values": TAGS},
            "resultTypes": ["violations"],
            "iframes": False,
        },
    )
    assert isinstance(result, list)
    return result


def described(failures: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for where, violations in failures.items():
        for v in violations:
            lines.append(f"{where}: {v['id']} ({v['impact']}): {v['help']}")
            lines += [f"    {n['target']}: {n['summary']}" for n in v["nodes"][:8]]
    return "\n".join(lines)


async def axe_finds_what_it_should(context: BrowserContext) -> None:
    """axe really runs: an image without alt and an input without a label are caught."""
    page = await context.new_page()
    await page.set_content('<html lang="en"><title>t</title><main><img src="x.png"><input></main>')
    found = {v["id"]: v["impact"] for v in await axe(page)}
    assert found.get("image-alt") == "critical" and found.get("label") == "critical", found
    await page.close()


async def new_context(browser: Browser, size: tuple[int, int]) -> BrowserContext:
    # CSP forbids inline scripts; axe is injected as one, so the test context bypasses it.
    context = await browser.new_context(
        viewport={"width": size[0], "height": size[1]}, bypass_csp=True
    )
    context.set_default_timeout(15_000)
    return context


async def sign_in(page: Page, username: str, password: str) -> None:
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_label("Password").press("Enter")
    await expect(page.get_by_role("heading", name="Queue")).to_be_visible()


async def check_pages(context: BrowserContext, base: str, size: str, ids, username, password):
    """Every page of PAGES at this size: its screenshot, and axe's violations by page."""
    page = await context.new_page()
    found: dict[str, list[dict[str, Any]]] = {}
    signed_in = False
    for screen in sorted(PAGES, key=lambda s: s.signed_in):
        if screen.signed_in and not signed_in:
            await page.goto(f"{base}/admin/login")
            await page.get_by_label("Username").fill(username)
            await page.get_by_label("Password").fill("not the password")
            await page.get_by_label("Password").press("Enter")
            await expect(page.get_by_role("alert")).to_be_visible()
            await page.screenshot(path=str(ARTIFACTS / f"login-refused-{size}.png"), full_page=True)
            found[f"login-refused at {size}"] = await axe(page)
            await sign_in(page, username, password)
            signed_in = True
        response = await page.goto(base + screen.url.format(**ids))
        assert response is not None
        assert response.status == screen.status, (screen.url, response.status)
        await page.screenshot(path=str(ARTIFACTS / f"{screen.name}-{size}.png"), full_page=True)
        found[f"{screen.name} at {size}"] = await axe(page)
    # The inspection form refused (a POST's answer, not a URL): every problem by its field.
    await page.goto(f"{base}/admin/orders/{ids['inspecting']}/inspect")
    await page.evaluate("document.getElementById('inspect-form').submit()")
    await expect(page.locator("#form-problems")).to_be_visible()
    await page.screenshot(path=str(ARTIFACTS / f"inspect-refused-{size}.png"), full_page=True)
    found[f"inspect-refused at {size}"] = await axe(page)
    # A new operator refused (the name taken): the name kept, the message by it, focused.
    await page.goto(f"{base}/admin/operators")
    await page.locator("#new-username").fill(username)
    await page.locator("#new-password").fill(secrets.token_urlsafe(16))
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#new-username-error")).to_be_visible()
    await expect(page.locator("#new-username")).to_be_focused()
    await page.screenshot(path=str(ARTIFACTS / f"operators-refused-{size}.png"), full_page=True)
    found[f"operators-refused at {size}"] = await axe(page)
    # A cancel refused (a reason too long, past the field's maxlength): nothing changes.
    await page.goto(f"{base}/admin/orders/{ids['shipped']}")
    await page.evaluate(
        "document.getElementById('cancel-reason').value = 'x'.repeat(600);"
        "document.getElementById('cancel-form').submit()"
    )
    await expect(page.locator("#cancel-reason-error")).to_be_visible()
    await page.screenshot(path=str(ARTIFACTS / f"order-cancel-refused-{size}.png"), full_page=True)
    found[f"order-cancel-refused at {size}"] = await axe(page)
    await page.close()
    return found


async def check_keyboard(context: BrowserContext, base: str, ids) -> None:
    """Tab first reaches the skip link, which moves focus into the page; Tab then reaches
    every link of the main navigation; every control of the inspection form is reachable
    by Tab alone."""
    page = await context.new_page()
    await page.goto(f"{base}/admin/")
    await page.keyboard.press("Tab")
    focused = page.locator(":focus")
    await expect(focused).to_have_text("Skip to content")
    await expect(focused).to_be_in_viewport()
    await page.keyboard.press("Enter")
    await expect(page.locator("main#main")).to_be_focused()

    await page.goto(f"{base}/admin/")
    reached = [await tab(page) for _ in range(20)]
    nav = await page.locator("nav[aria-label=Main] a").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert len(nav) >= 5 and set(nav) <= {r["key"] for r in reached}, (nav, reached)

    # Tab from the top of the page until focus has gone through the form and out of it.
    await page.goto(base + f"/admin/orders/{ids['inspecting']}/inspect")
    await page.locator("main#main").focus()
    reached = []
    for _ in range(300):
        reached.append(await tab(page))
        if reached[-1]["in_form"] is False and any(r["in_form"] for r in reached):
            break
    controls = await page.locator(
        "#inspect-form :is(input:not([type=hidden]), select, textarea, button):not([disabled])"
    ).evaluate_all(f"els => els.map({KEY})")
    assert set(controls) <= {r["key"] for r in reached}, (controls, reached)
    # The focus ring is seen: 3:1 against what is behind it (WCAG 1.4.11), on a form field
    # on a white card and on a link in the dark header.
    for target in ("#imei", "nav[aria-label=Main] a"):
        await page.locator(target).first.focus()
        ring = await page.locator(target).first.evaluate(RING)
        assert ring["visible"] and ring["style"] != "none" and ring["width"] >= 2, (target, ring)
        assert contrast(ring["color"], ring["behind"]) >= 3, (target, ring)
    await page.close()


# The focused element's outline, and the first opaque background behind the element.
RING = """e => {
    const style = getComputedStyle(e);
    let behind = e.parentElement;
    while (behind && getComputedStyle(behind).backgroundColor.endsWith(', 0)')) {
        behind = behind.parentElement;
    }
    return {visible: e.matches(':focus-visible'), style: style.outlineStyle,
            width: parseFloat(style.outlineWidth), color: style.outlineColor,
            behind: behind ? getComputedStyle(behind).backgroundColor : 'rgb(255, 255, 255)'};
}"""


def contrast(one: str, other: str) -> float:
    """WCAG's contrast ratio of two CSS rgb() colors."""

    def luminance(css: str) -> float:
        channels = [int(c) / 255 for c in re.findall(r"\d+", css)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(one), luminance(other)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# What names a focusable element: its id, a link's address, a button's text; a radio group
# by its name (Tab enters a group once, the arrow keys move within it).
KEY = """e => e.type === 'radio' ? 'radio:' + e.name
    : (e.id || e.getAttribute('href') || e.textContent.trim())"""


async def tab(page: Page) -> dict[str, Any]:
    """Press Tab; what has the focus now, and whether it is in the inspection form."""
    await page.keyboard.press("Tab")
    focused = await page.evaluate(
        f"""() => {{
            const e = document.activeElement;
            return {{key: ({KEY})(e), in_form: !!e.closest('#inspect-form')}};
        }}"""
    )
    assert isinstance(focused, dict)
    return focused


@pytest.mark.timeout(180)
async def test_every_page_passes_axe_at_tablet_and_desktop_size(
    client, resources, settings, make_user
):
    assert AXE.is_file(), f"{AXE} is missing: run `make test` (or npm ci in tests/browser)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ids = await seeded(client, resources, settings, make_user)
    password = secrets.token_urlsafe(16)
    admin = await make_operator(resources, "admin", password=password)
    failures: dict[str, list[dict[str, Any]]] = {}
    everything: dict[str, list[dict[str, Any]]] = {}
    async with serving(resources) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            for size, viewport in SIZES.items():
                context = await new_context(browser, viewport)
                found = await check_pages(context, base, size, ids, admin.username, password)
                everything.update(found)
                if size == "tablet":
                    await axe_finds_what_it_should(context)
                    await check_keyboard(context, base, ids)
                await context.close()
        finally:
            await browser.close()
    # Every violation, the moderate and minor ones too, for whoever improves the pages next.
    (ARTIFACTS / "axe-violations.json").write_text(json.dumps(everything, indent=2))
    for where, violations in everything.items():
        serious = [v for v in violations if v["impact"] in FAILING]
        if serious:
            failures[where] = serious
    assert not failures, "axe-core: serious or critical violations\n" + described(failures)
