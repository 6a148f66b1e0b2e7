"""A label file as a download: the seller's (GET /api/shipping/labels/{id}), an operator's
(GET /api/admin/orders/{id}/label) and the dashboard's, one response; and the label home the
dashboard prints (`return_label_response`)."""

from __future__ import annotations

from fastapi import Response

from refit.errors import NotFound
from refit.models import Order
from refit.models.shipping import ReturnShipment
from refit.resources import Resources
from refit.storage import LabelNotFound, content_type_for, label_storage


async def label_response(res: Resources, order: Order) -> Response:
    if not order.label_file_key:
        raise NotFound("This order has no label yet", code="label_not_ready")
    return await _file(res, order.label_file_key, f"{order.order_number}-label")


async def return_label_response(
    res: Resources, order: Order, home: ReturnShipment | None
) -> Response:
    if home is None or not home.label_file_key:
        raise NotFound("This order has no label home yet", code="label_not_ready")
    # Inline: the tablet opens it in its viewer, to print.
    return await _file(
        res, home.label_file_key, f"{order.order_number}-return-label", disposition="inline"
    )


async def _file(
    res: Resources, key: str, name: str, *, disposition: str = "attachment"
) -> Response:
    try:
        data = await label_storage(res.settings).get(key)
    except LabelNotFound as exc:
        raise NotFound("The label file is missing", code="label_not_found") from exc
    extension = key.rsplit(".", 1)[-1]
    return Response(
        content=data,
        media_type=content_type_for(key),
        headers={
            "Content-Disposition": f'{disposition}; filename="{name}.{extension}"',
            # A label is a bearer document (anyone holding it can ship on our account).
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
