"""The sandbox label prints names in Chinese and Japanese as text (not boxes) and wraps long
lines inside the label, above the barcode."""

from __future__ import annotations

import io

from pypdf import PdfReader
from reportlab.pdfbase import pdfmetrics

from refit.carriers.interface import Address
from refit.carriers.sandbox.carrier import SandboxCarrier
from refit.carriers.sandbox.label_pdf import BARCODE_TOP, MARGIN, WIDTH, render_label
from refit.shipping.parcels import PARCELS

NAME = "王小明 / 山田太郎"
# 200 characters, spaced like a real (if absurd) street line.
LONG_STREET = ("1-2-3 Nishi-Shinjuku Mitsui Building Annex Tower " * 5)[:200]
SHORT_STREET = "1-2-3 Nishi-Shinjuku"
WAREHOUSE = Address(
    name="ReFit Receiving", street1="215 Clayton St", city="San Francisco", state="CA", zip="94117"
)


def _drawn(pdf: bytes) -> list[tuple[str, float, float, str, float]]:
    """Every line of text on the label: (text, x, y, font, size)."""
    found = []

    def visit(text, cm, tm, font, size):
        if text.strip():
            name = str(font["/BaseFont"]).lstrip("/") if font else ""
            found.append((text.strip("\n"), tm[4], tm[5], name, size))

    PdfReader(io.BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    return found


def _assert_inside(drawn) -> None:
    for text, x, _, font, size in drawn:
        right = x + pdfmetrics.stringWidth(text, font, size)
        assert x >= MARGIN - 0.01 and right <= WIDTH - MARGIN + 0.01, (text, x, right)


def _label(street1: str, *, name: str = NAME, to_seller: bool = False) -> bytes:
    seller = Address(name=name, street1=street1, city="Shinjuku", state="TK", zip="16000")
    return render_label(
        address_from=WAREHOUSE if to_seller else seller,
        address_to=seller if to_seller else WAREHOUSE,
        carrier="USPS",
        service="Priority Mail",
        tracking_number="9400110200881234567890",
        weight_lb="1",
        services=["INSURED $412.50", "SIGNATURE REQUIRED"],
    )


async def test_the_sandbox_label_prints_cjk_and_wraps_long_lines(resources):
    """Through the sandbox carrier (its objects in the database), as the label job fetches it."""
    carrier = SandboxCarrier(resources.sessionmaker)
    seller = Address(name=NAME, street1=LONG_STREET, city="Shinjuku", state="TK", zip="16000")
    rate = (
        await carrier.get_rates(seller, WAREHOUSE, PARCELS["phone"], metadata="order:cjk")
    ).rates[0]
    txn = await carrier.purchase_label(rate.rate_id, metadata="order:cjk", label_file_type="PDF")
    pdf = await carrier.download_label(txn)

    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert NAME in text
    assert txn.tracking_number in text and "215 CLAYTON ST" in text
    drawn = _drawn(pdf)
    [name_line] = [d for d in drawn if NAME in d[0]]
    assert name_line[3] not in ("Helvetica", "Helvetica-Bold")  # a font with CJK glyphs
    _assert_inside(drawn)
    # Every character of the street is on the label, over more lines than a short one takes.
    printed = "".join(t for t, *_ in drawn).replace(" ", "")
    assert LONG_STREET.upper().replace(" ", "") in printed
    assert len(drawn) > len(_drawn(_label(SHORT_STREET)))


def test_a_long_ship_to_block_stays_above_the_barcode():
    """The label home goes to the seller: their address is the big ship-to block."""
    for street in (LONG_STREET, "東京都新宿区西新宿二丁目" * 17):  # unspaced: broken by characters
        drawn = _drawn(_label(street, to_seller=True))
        _assert_inside(drawn)
        assert NAME in "".join(t for t, *_ in drawn)
        above = [y for t, _, y, *_ in drawn if not t.startswith("TRACKING #")]
        assert min(above) > BARCODE_TOP
