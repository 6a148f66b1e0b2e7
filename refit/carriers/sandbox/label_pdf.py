"""The sandbox carrier's label: a real 4x6 in PDF with both addresses and a Code128 barcode.

Helvetica covers only WinAnsi (Latin-1 and a few more): a line with anything else (a name in
Chinese, Japanese or Korean, Cyrillic) is set in one of the CID fonts every PDF reader has
(Adobe's Asian font packs), which need no font file of ours. Every line is wrapped to the
label's width, long words and unspaced CJK text broken by characters.

One layout (`_draw`), two pages to draw it on: a label all in Helvetica (every US label) is
written by `_Page`, its operators into a document whose every other object is made once
(a few hundred microseconds less than reportlab's document machinery, on a label job that
costs a few milliseconds in all); a label with a CID font line is drawn by reportlab.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from functools import partial
from typing import Any

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
    draw = partial(
        _draw,
        address_from=address_from,
        address_to=address_to,
        carrier=carrier,
        service=service,
        tracking_number=tracking_number,
        weight_lb=weight_lb,
        services=services,
    )
    page = _Page()
    try:
        draw(page)
    except _NotHelvetica:
        buffer = io.BytesIO()
        draw(canvas.Canvas(buffer, pagesize=(WIDTH, HEIGHT)))
        return buffer.getvalue()
    return page.document()


def _draw(
    page: Any,
    *,
    address_from: Address,
    address_to: Address,
    carrier: str,
    service: str,
    tracking_number: str,
    weight_lb: str,
    services: Sequence[str],
) -> None:
    """The label on `page`: a reportlab Canvas, or a `_Page` (which draws what it can)."""
    page.setTitle(f"Label {tracking_number}")
    page.setAuthor(_AUTHOR)

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


class _NotHelvetica(Exception):
    """A line `_Page` cannot set: it needs a CID font (reportlab draws that label)."""


# `_Page`'s fonts: the two standard ones the label uses, in WinAnsiEncoding, by resource name.
_FONTS = {"Helvetica": "F1", "Helvetica-Bold": "F2"}
_AUTHOR = "ReFit sandbox carrier"
# Every object but the page's operators (6) and the document's title (7): made once.
_HEAD = (
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n",
    b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n",
    (
        f"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {WIDTH:g} {HEIGHT:g}] "
        "/Resources << /Font << /F1 4 0 R /F2 5 0 R >> /ProcSet [/PDF /Text] >> "
        "/Contents 6 0 R >>\nendobj\n"
    ).encode(),
    *(
        f"{4 + index} 0 obj\n<< /Type /Font /Subtype /Type1 /Name /{key} /BaseFont /{name} "
        "/Encoding /WinAnsiEncoding >>\nendobj\n".encode()
        for index, (name, key) in enumerate(_FONTS.items())
    ),
)
_HEAD_OFFSETS = [sum(map(len, _HEAD[:index])) for index in range(1, len(_HEAD))]
_HEAD_BYTES = b"".join(_HEAD)
_ESCAPES = str.maketrans({"\\": "\\\\", "(": "\\(", ")": "\\)", "\r": "\\r", "\n": "\\n"})


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _pdf_string(text: str) -> bytes:
    try:
        return b"(" + text.translate(_ESCAPES).encode("cp1252") + b")"
    except UnicodeEncodeError:
        raise _NotHelvetica(text) from None


class _Page:
    """The drawing calls `_draw` makes of a reportlab Canvas (and the barcode of it: state,
    translate, filled rectangles), as PDF operators, for a label all in Helvetica; and the
    one-page document around them."""

    def __init__(self) -> None:
        self._ops: list[bytes] = [b"1 0 0 1 0 0 cm  BT /F1 12 Tf 14.4 TL ET"]
        self._font = ("Helvetica", 12.0)
        self._title = ""

    # reportlab's names: `_draw` calls either page alike.
    def setTitle(self, title: str) -> None:
        self._title = title

    def setAuthor(self, author: str) -> None:
        if author != _AUTHOR:
            raise ValueError(f"the label's author is {_AUTHOR!r}")

    def setFont(self, name: str, size: float) -> None:
        if name not in _FONTS:
            raise _NotHelvetica(name)
        self._font = (name, size)
        self._ops.append(
            b"BT /%s %s Tf %s TL ET"
            % (_FONTS[name].encode(), _number(size).encode(), _number(size * 1.2).encode())
        )

    def drawString(self, x: float, y: float, text: str) -> None:
        # As reportlab writes it (a text object of its own, ending on the next line): a
        # reader's text extraction sees the same lines in either.
        self._ops.append(
            b"BT 1 0 0 1 %s %s Tm %s Tj T* ET"
            % (_number(x).encode(), _number(y).encode(), _pdf_string(text))
        )

    def drawRightString(self, x: float, y: float, text: str) -> None:
        self.drawString(x - pdfmetrics.stringWidth(text, *self._font), y, text)

    def drawCentredString(self, x: float, y: float, text: str) -> None:
        self.drawString(x - pdfmetrics.stringWidth(text, *self._font) / 2, y, text)

    def line(self, x1: float, y1: float, x2: float, y2: float) -> None:
        self._ops.append(f"{_number(x1)} {_number(y1)} m {_number(x2)} {_number(y2)} l S".encode())

    def saveState(self) -> None:
        self._ops.append(b"q")

    def restoreState(self) -> None:
        self._ops.append(b"Q")

    def translate(self, dx: float, dy: float) -> None:
        self._ops.append(f"1 0 0 1 {_number(dx)} {_number(dy)} cm".encode())

    def rect(
        self, x: float, y: float, width: float, height: float, stroke: int = 1, fill: int = 0
    ) -> None:
        paint = {(0, 1): "f*", (1, 0): "S", (1, 1): "B*"}[(stroke, fill)]
        self._ops.append(
            f"n {_number(x)} {_number(y)} {_number(width)} {_number(height)} re {paint}".encode()
        )

    def showPage(self) -> None:
        pass

    def save(self) -> None:
        pass

    def document(self) -> bytes:
        operators = b"\n".join(self._ops)
        tail = [
            b"6 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n"
            % (len(operators), operators),
            b"7 0 obj\n<< /Title %s /Author %s >>\nendobj\n"
            % (_pdf_string(self._title), _pdf_string(_AUTHOR)),
        ]
        offsets = [*_HEAD_OFFSETS, len(_HEAD_BYTES), len(_HEAD_BYTES) + len(tail[0])]
        xref_at = offsets[-1] + len(tail[1])
        xref = b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
        return b"".join(
            [
                _HEAD_BYTES,
                *tail,
                b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1),
                xref,
                b"trailer\n<< /Size %d /Root 1 0 R /Info 7 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                % (len(offsets) + 1, xref_at),
            ]
        )
