"""A label file as a download: the seller's (GET /api/shipping/labels/{id}), an operator's
(GET /api/admin/orders/{id}/label) and the dashboard's, one response."""

from __future__ import annotations

from fastapi import Response

from refit.errors import NotFound
from refit.models import Order
from refit.resources import Resources
from refit.storage import LabelNotFound, content_type_for, label_storage


async def label_response(res: Resources, order: Order) -> Response:
    if not order.label_file_key:
        raise NotFound("This order has no label yet", code="label_not_ready")
    try:
        data = await label_storage(res.settings).get(order.label_file_key)
    except LabelNotFound as exc:
        raise NotFound("The label file is missing", code="label_not_found") from exc
    extension = order.label_file_key.rsplit(".", 1)[-1]
    return Response(
        content=data,
        media_type=content_type_for(order.label_file_key),
        headers={
            "Content-Disposition": f'attachment; filename="{order.order_number}-label.{extension}"',
            # A label is a bearer document (anyone holding it can ship on our account).
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
