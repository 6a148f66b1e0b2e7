"""The way-home and label buttons (refit/dashboard/returns.py) refuse as a message on the order
page and change nothing: the wrong state, a label with nothing left to refund, the carrier not
answering (a clear "try again"); admins alone retry or refund a label; a form without its
CSRF token is refused. A move that goes through is recorded naming the operator."""

from __future__ import annotations

from refit.models import OrderStatus
from tests.dashboard.helpers import csrf_of, signed_in_operator
from tests.dashboard.returns_setup import (
    REFUND,
    RETRY,
    jobs,
    label_bought,
    label_failed,
    offer_pending,
    trail,
)
from tests.shipping.helpers import order_row


async def _press(client, order_id, move: str, csrf: str):
    return await client.post(f"/admin/orders/{order_id}/{move}", data={"csrf": csrf})


async def _refused(client, response, order_id, code: str, words: str) -> None:
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/admin/orders/{order_id}?refused={code}#returns"
    page = await client.get(response.headers["location"])
    assert page.status_code == 200
    assert words in page.text


async def test_refusals_come_back_on_the_order_page_and_change_nothing(
    client, resources, settings, make_user, run_jobs
):
    admin, csrf = await signed_in_operator(resources, client, "admin")
    offered = await offer_pending(client, resources, make_user)

    # Wrong state: a label retried, refunded or handed over for an order that is none of that.
    for move in ("retry-label", "refund-label", "return-handed-over"):
        refused = await _press(client, offered.id, move, csrf)
        await _refused(client, refused, offered.id, "invalid_order_state", "nothing was changed")
    assert (await order_row(resources, offered.id)).status is OrderStatus.OFFER_PENDING

    # Home, but its label not bought yet: not handed over.
    sent = await _press(client, offered.id, "send-home", csrf)
    assert sent.headers["location"] == f"/admin/orders/{offered.id}?done=sent_home#returns"
    refused = await _press(client, offered.id, "return-handed-over", csrf)
    await _refused(client, refused, offered.id, "return_label_not_bought", "not bought yet")
    await run_jobs()
    handed = await _press(client, offered.id, "return-handed-over", csrf)
    assert handed.headers["location"].endswith("done=handed_over#returns")
    again = await _press(client, offered.id, "return-handed-over", csrf)
    await _refused(client, again, offered.id, "return_handed_over", "handed to the carrier already")
    assert await trail(resources, offered.id) == [
        ("order.return_handed_over", f"operator:{admin.id}")
    ]

    # A cancelled order with a label: the carrier down is "try again", nothing queued.
    labelled = await label_bought(client, resources, make_user, run_jobs)
    cancelled = await client.post(
        f"/admin/orders/{labelled.id}/cancel", data={"csrf": csrf, "reason": "fraud check"}
    )
    assert cancelled.status_code == 303
    before = await jobs(resources, REFUND, labelled.id)
    assert before == ["todo"]  # the cancel's own follow-up
    settings.shippo_api_key = "shippo_test_down"
    settings.shippo_base_url = "http://127.0.0.1:9"  # nothing listens: connection refused
    try:
        down = await _press(client, labelled.id, "refund-label", csrf)
        await _refused(client, down, labelled.id, "carrier_unavailable", "Try again in a minute")
    finally:
        settings.shippo_api_key = None
    assert await jobs(resources, REFUND, labelled.id) == before
    assert await trail(resources, labelled.id) == []
    # Refunded by the cancel's job: the button has nothing left to refund.
    await run_jobs()
    refund = await _press(client, labelled.id, "refund-label", csrf)
    await _refused(client, refund, labelled.id, "label_not_refundable", "no label left to refund")
    assert await jobs(resources, REFUND, labelled.id) == ["succeeded"]


async def test_admins_alone_retry_or_refund_and_every_form_needs_its_token(
    client, resources, make_user
):
    _, csrf = await signed_in_operator(resources, client, "inspector")
    failed = await label_failed(client, resources, make_user)
    page = await client.get(f"/admin/orders/{failed.id}")
    assert "Retry the label" not in page.text
    refused = await _press(client, failed.id, "retry-label", csrf)
    assert refused.status_code == 403 and "admin" in refused.text
    assert (await order_row(resources, failed.id)).label_error == "UPS API did not respond"

    admin, csrf = await signed_in_operator(resources, client, "admin")
    page = await client.get(f"/admin/orders/{failed.id}")
    assert f'action="/admin/orders/{failed.id}/retry-label"' in page.text
    forged = await _press(client, failed.id, "retry-label", "not-the-token")
    assert forged.status_code == 403
    assert (await order_row(resources, failed.id)).label_error == "UPS API did not respond"
    assert await trail(resources, failed.id) == []

    retried = await _press(client, failed.id, "retry-label", csrf_of(page.text))
    assert retried.headers["location"].endswith("done=label_retried#returns")
    assert (await order_row(resources, failed.id)).label_error is None
    assert await jobs(resources, RETRY, failed.id) == ["failed", "todo"]
    assert await trail(resources, failed.id) == [("order.retry_label", f"operator:{admin.id}")]
    shown = await client.get(retried.headers["location"])
    assert "Label purchase queued again" in shown.text
    assert admin.username in shown.text
