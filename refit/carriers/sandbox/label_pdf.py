"""The sandbox carrier's label: a real 4x6 in PDF with both addresses and a Code128 barcode.

Helvetica covers only WinAnsi (Latin-1 and a few more): a line with anything else (a name in
Chinese, Japanese or Korean, Cyrillic) is set in one of the CID fonts every PDF reader has
(Adobe's Asian font packs), which need no font file of ours. Every line is wrapped to the
label's width, long words and unspaced CJK text broken by characters.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import inch
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from refit.carriers.interface import Address

WIDTH, HEIGHT = 4 * inch, 6 * inch
MARGIN = 0.2 * inch
# Where the barcode block begins: the addresses stop above it.
BARCODE_TOP = MARGIN + 0.45 * inch + 0.9 * inch
# The ship-to block shrinks down to this size before it would reach the barcode.
SMALLEST_SHIP_TO = 7

# Per script, a CID font that has its glyphs: Korean (Adobe-Korea1), Japanese kana
# (Adobe-Japan1), and the rest (Han, Cyrillic, Greek…: Adobe-GB1).
KOREAN, JAPANESE, CHINESE = "HYGothic-Medium", "HeiseiKakuGo-W5", "STSong-Light"
for _name in (KOREAN, JAPANESE, CHINESE):
    pdfmetrics.registerFont(UnicodeCIDFont(_name))


def font_for(text: str, base: str) -> str:
    """`base` if it can show every character of `text`, else the CID font for its script."""
    try:
        text.encode("cp1252")  # Helvetica's WinAnsiEncoding
        return base
    except UnicodeEncodeError:
        pass
    names = [unicodedata.name(c, "") for c in text]
    if any(n.startswith("HANGUL") for n in names):
        return KOREAN
    if any(n.startswith(("HIRAGANA", "KATAKANA")) for n in names):
        return JAPANESE
    return CHINESE


def wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """`text` in lines no wider than `width` points: broken at spaces where it can be,
    inside a word (or an unspaced CJK run) where it must."""

    def fits(line: str) -> bool:
        return pdfmetrics.stringWidth(line, font, size) <= width

    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if fits(candidate):
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for char in word:
            if line and not fits(line + char):
                lines.append(line)
                line = ""
            line += char
    if line or not lines:
        lines.append(line)
    return lines


def _draw_lines(
    page: canvas.Canvas, x: float, y: float, text: str, base: str, size: float, leading: float
) -> float:
    """Draw `text` from (x, y) down, wrapped to the right margin; returns the last line's y."""
    font = font_for(text, base)
    page.setFont(font, size)
    for index, line in enumerate(wrap(text, font, size, WIDTH - MARGIN - x)):
        if index:
            y -= leading
        page.drawString(x, y, line)
    return y


def _line_count(lines: Sequence[str], base: str, size: float, x: float) -> int:
    return sum(len(wrap(t, font_for(t, base), size, WIDTH - MARGIN - x)) for t in lines)


def _address_lines(address: Address) -> list[str]:
    lines = [address.name]
    if address.company:
        lines.append(address.company)
    lines.append(address.street1)
    if address.street2:
        lines.append(address.street2)
    lines.append(f"{address.city} {address.state} {address.zip}")
    lines.append(address.country)
    return [line.upper() for line in lines]


def render_label(
    *,
    address_from: Address,
    address_to: Address,
    carrier: str,
    service: str,
    tracking_number: str,
    weight_lb: str,
    services: Sequence[str] = (),
) -> bytes:
    """`services`: what the label carries beyond postage ("INSURED $412.50", "SIGNATURE
    REQUIRED"), printed under the service name."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=(WIDTH, HEIGHT))
    page.setTitle(f"Label {tracking_number}")
    page.setAuthor("ReFit sandbox carrier")

    # The warning on its own line: a long service name would run into it.
    y = HEIGHT - MARGIN - 7
    page.setFont("Helvetica", 7)
    page.drawRightString(WIDTH - MARGIN, y, "SANDBOX - NOT VALID POSTAGE")
    y -= 16
    y = _draw_lines(
        page, MARGIN, y, f"{carrier.upper()} {service.upper()}", "Helvetica-Bold", 14, 15
    )
    if services:
        y -= 11
        y = _draw_lines(page, MARGIN, y, " / ".join(services), "Helvetica-Bold", 8, 9)
    y -= 8
    page.line(MARGIN, y, WIDTH - MARGIN, y)

    y -= 12
    page.setFont("Helvetica", 7)
    page.drawString(MARGIN, y, "FROM:")
    for line in _address_lines(address_from):
        y = _draw_lines(page, MARGIN + 4, y - 9, line, "Helvetica", 7, 9)
    page.setFont("Helvetica", 7)
    page.drawRightString(WIDTH - MARGIN, y, f"WEIGHT {weight_lb} LB")

    y -= 20
    page.setFont("Helvetica-Bold", 8)
    page.drawString(MARGIN, y, "SHIP TO:")
    # A long address steps the ship-to size down rather than run into the barcode.
    to_lines = _address_lines(address_to)
    size = 11
    while size > SMALLEST_SHIP_TO and (
        y - (size + 3) * _line_count(to_lines, "Helvetica-Bold", size, MARGIN + 12) - 18
        < BARCODE_TOP
    ):
        size -= 1
    for line in to_lines:
        y = _draw_lines(page, MARGIN + 12, y - (size + 3), line, "Helvetica-Bold", size, size + 3)

    y -= 18
    page.line(MARGIN, y, WIDTH - MARGIN, y)
    barcode = Code128(tracking_number, barHeight=0.9 * inch, barWidth=0.012 * inch)
    x = (WIDTH - barcode.width) / 2
    barcode.drawOn(page, max(MARGIN, x), BARCODE_TOP - 0.9 * inch)
    page.setFont("Helvetica-Bold", 10)
    page.drawCentredString(WIDTH / 2, MARGIN + 0.2 * inch, f"TRACKING # {tracking_number}")
    page.showPage()
    page.save()
    return buffer.getvalue()
