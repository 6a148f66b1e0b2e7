"""The order status templates render from the context as the mail log stores it (JSON: money
and times are strings), the same as from the Python values, and never print a raw ISO time."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from refit.notifications.render import TEMPLATES_DIR, render
from refit.settings import Settings

ORDER_TEMPLATES = sorted(p.name for p in TEMPLATES_DIR.glob("order_*"))
SETTINGS = Settings(_env_file=None, env="test", public_url="http://testserver")  # type: ignore[call-arg]


def _context(**changes):
    # What the orders domain puts in an email's context after a status change.
    return {
        "order_id": "0b6c1a52-7d43-4c2e-9d0e-5a1f3e2b8c71",
        "order_number": "RF-1042",
        "status": "offer_pending",
        "from_status": "inspecting",
        "device": "Apple iPhone 13",
        "quoted_price_usd": Decimal("1120.00"),
        "final_price_usd": Decimal("95.5"),
        "offer_expires_at": dt.datetime(2026, 12, 1, 10, 0, 30, 123456, tzinfo=dt.UTC),
        "tracking_number": "9400TEST",
        "shipping_carrier": "USPS",
        "attachments": [],
        **changes,
    }


def _as_stored(context):
    return json.loads(json.dumps(context, default=str))


def test_every_order_template_is_covered():
    assert len(ORDER_TEMPLATES) >= 7


NO_REVISION = {"final_price_usd": None, "offer_expires_at": None}
CASES = [(t, {}) for t in ORDER_TEMPLATES] + [
    # Before an inspection there is no revised price nor deadline; a revised offer has both.
    (t, NO_REVISION)
    for t in ORDER_TEMPLATES
    if t != "order_offer_pending"
]
# A move made by hand, before any label: no tracking number nor carrier to show.
CASES.append(("order_shipped", {"tracking_number": None, "shipping_carrier": None}))


@pytest.mark.parametrize(("template", "changes"), CASES)
def test_strings_render_as_the_values_do(template, changes):
    native = render(SETTINGS, template, _context(**changes))
    stored = render(SETTINGS, template, _as_stored(_context(**changes)))
    assert stored == native
    for part in (stored.subject, stored.text, stored.html):
        assert "T10:00" not in part and "None" not in part


def test_money_and_deadline_are_formatted():
    offer = render(SETTINGS, "order_offer_pending", _as_stored(_context()))
    assert "$1,120.00" in offer.text and "$95.50" in offer.text
    assert "before December 1, 2026 at 10:00 UTC" in offer.text
    assert "$95.50" in offer.html and "December 1, 2026 at 10:00 UTC" in offer.html

    paid = render(SETTINGS, "order_completed", _as_stored(_context(final_price_usd=None)))
    assert "($1,120.00)" in paid.text

    # A time from another zone, or without one (taken as UTC), is shown in UTC.
    for when in ("2026-12-01T05:00:00-05:00", "2026-12-01T10:00:00"):
        again = render(SETTINGS, "order_offer_pending", _context(offer_expires_at=when))
        assert "December 1, 2026 at 10:00 UTC" in again.text


def test_a_price_that_is_not_a_number_fails_loudly():
    with pytest.raises(ArithmeticError):
        render(SETTINGS, "order_received", _context(quoted_price_usd="n/a"))


def test_shipped_shows_tracking_and_carrier_when_known():
    shipped = render(SETTINGS, "order_shipped", _as_stored(_context(status="shipped")))
    assert shipped.subject == "Your Apple iPhone 13 is on its way to us (order RF-1042)"
    assert "Tracking number: 9400TEST (USPS)" in shipped.text
    assert "<code>9400TEST</code> (USPS)" in shipped.html
    unknown = render(SETTINGS, "order_shipped", _context(tracking_number=None))
    assert "Tracking number" not in unknown.text and "Tracking number" not in unknown.html


def test_label_ready_says_the_label_is_attached_only_when_it_is():
    label = {"storage_key": "labels/o/t.pdf", "filename": "refit-label-RF-1042.pdf"}
    attached = render(SETTINGS, "order_label_ready", _context(attachments=[label]))
    assert "It is attached to this email" in attached.text
    assert "It is attached to this email" in attached.html
    # Without a file (a move made by hand), or a context queued before attachments existed.
    for context in (_context(), {k: v for k, v in _context().items() if k != "attachments"}):
        plain = render(SETTINGS, "order_label_ready", context)
        assert "attached" not in plain.text and "download it" in plain.text


RECEIPT = {
    "signature": "5" * 88,
    "lamports": 2_946_600_000,
    "amount_sol": "2.9466",
    "usd_per_sol": "150.25",
    "rate_source": "coingecko",
    "rate_at": "2026-12-01T10:00:30+00:00",
    "explorer_url": f"https://explorer.solana.com/tx/{'5' * 88}?cluster=devnet",
}


@pytest.mark.parametrize("explorer_url", [RECEIPT["explorer_url"], None])
def test_the_paid_email_is_a_receipt(explorer_url):
    receipt = {**RECEIPT, "explorer_url": explorer_url}
    paid = render(SETTINGS, "order_completed", _as_stored(_context(payment=receipt)))
    assert (
        "You were paid 2.9466 SOL, at $150.25 per SOL (coingecko, December 1, 2026 at 10:00 UTC)."
        in paid.text
    )
    assert f"Transaction: {'5' * 88}" in paid.text
    if explorer_url:
        assert f"Check it on the Solana explorer: {explorer_url}" in paid.text
        assert f'<a href="{explorer_url}">' in paid.html
    else:
        assert "explorer" not in paid.text and "explorer" not in paid.html
    # A move to completed by hand (no payout) says nothing of one.
    by_hand = render(SETTINGS, "order_completed", _context(payment=None))
    assert "You were paid" not in by_hand.text and "Transaction" not in by_hand.html
