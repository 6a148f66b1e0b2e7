"""Orders brought to the warehouse, operators, photos with metadata to strip."""

from __future__ import annotations

import io
import os
from typing import Any

import httpx
from PIL import Image

from refit.models import Operator, OrderStatus
from refit.resources import Resources
from tests.admin.helpers import bearer_for, make_operator
from tests.orders.helpers import operator_move, place_order

S = OrderStatus
# A valid IMEI (Luhn) and the same with its check digit changed.
IMEI = "490154203237518"
BAD_IMEI = "490154203237519"
# tests/orders/helpers.py DEVICE: an iPhone 15 Pro 256GB ($520) quoted "good" (x 0.85).
QUOTED = "442.00"
FAIR_PRICE = "338.00"  # 520 x 0.65
CHECKLIST = {
    "powers_on": True,
    "activation_lock_off": True,
    "screen": "ok",
    "battery_health_pct": 91,
}


class Op:
    """An operator and the headers of their token."""

    def __init__(self, operator: Operator, headers: dict[str, str]) -> None:
        self.id = operator.id
        self.actor = f"operator:{operator.id}"
        self.headers = headers


async def operator(resources: Resources, role: str = "inspector") -> Op:
    made = await make_operator(resources, role)
    return Op(made, bearer_for(resources, made))


async def shipped_order(client: httpx.AsyncClient, resources: Resources, seller: Any) -> str:
    """A seller's order whose label was bought (awaiting_shipment), no carrier scan yet."""
    order_id = (await place_order(client, resources, seller))["id"]
    for status in (S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT):
        await operator_move(resources, order_id, status, actor="system:test")
    return str(order_id)


async def inspecting_order(
    client: httpx.AsyncClient, resources: Resources, seller: Any, op: Op
) -> str:
    """An order received and in inspection, both moves through the operators' API."""
    order_id = await shipped_order(client, resources, seller)
    received = await client.post(f"/api/admin/orders/{order_id}/receive", headers=op.headers)
    assert received.status_code == 200, received.text
    started = await client.post(
        f"/api/admin/orders/{order_id}/inspection/start", headers=op.headers
    )
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "inspecting"
    return order_id


def verdict(**changes: Any) -> dict[str, Any]:
    return {
        "grade": "good",
        "imei": IMEI,
        "checklist": CHECKLIST,
        "notes": "Light scratches on the back.",
        **changes,
    }


def jpeg_with_gps(size: tuple[int, int] = (64, 32), color: tuple[int, int, int] = (200, 30, 30)):
    """A JPEG carrying EXIF: a GPS position, a camera make, and orientation 6 (turn 90°)."""
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"
    exif[0x0112] = 6
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0)}
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", exif=exif.tobytes())
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825), "the fixture has GPS"
    return data


def noise_png(side: int) -> bytes:
    """A PNG that does not compress (random pixels): about 3 x side² bytes."""
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG")
    return out.getvalue()


def upload(*files: tuple[str, bytes, str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("photos", f) for f in files]


async def story(client: httpx.AsyncClient, order_id: str, op: Op) -> dict[str, Any]:
    response = await client.get(f"/api/admin/orders/{order_id}", headers=op.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
