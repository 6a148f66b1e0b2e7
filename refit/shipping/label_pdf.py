"""The sandbox carrier's label: a real 4x6 in PDF with both addresses and a Code128 barcode."""

from __future__ import annotations

import io
from collections.abc import Sequence

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import inch
from reportlab.pdfgen import canvas

from refit.shipping.carrier import Address

WIDTH, HEIGHT = 4 * inch, 6 * inch
MARGIN = 0.2 * inch


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
    page.setFont("Helvetica-Bold", 14)
    page.drawString(MARGIN, y, f"{carrier.upper()} {service.upper()}")
    if services:
        y -= 11
        page.setFont("Helvetica-Bold", 8)
        page.drawString(MARGIN, y, " / ".join(services))
    y -= 8
    page.line(MARGIN, y, WIDTH - MARGIN, y)

    y -= 12
    page.setFont("Helvetica", 7)
    page.drawString(MARGIN, y, "FROM:")
    for line in _address_lines(address_from):
        y -= 9
        page.drawString(MARGIN + 4, y, line)
    page.drawRightString(WIDTH - MARGIN, y, f"WEIGHT {weight_lb} LB")

    y -= 20
    page.setFont("Helvetica-Bold", 8)
    page.drawString(MARGIN, y, "SHIP TO:")
    page.setFont("Helvetica-Bold", 11)
    for line in _address_lines(address_to):
        y -= 14
        page.drawString(MARGIN + 12, y, line)

    y -= 18
    page.line(MARGIN, y, WIDTH - MARGIN, y)
    barcode = Code128(tracking_number, barHeight=0.9 * inch, barWidth=0.012 * inch)
    x = (WIDTH - barcode.width) / 2
    barcode.drawOn(page, max(MARGIN, x), MARGIN + 0.45 * inch)
    page.setFont("Helvetica-Bold", 10)
    page.drawCentredString(WIDTH / 2, MARGIN + 0.2 * inch, f"TRACKING # {tracking_number}")
    page.showPage()
    page.save()
    return buffer.getvalue()
