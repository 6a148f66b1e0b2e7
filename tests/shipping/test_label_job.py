"""The label job on a real worker: sandbox end to end, carrier failures and retries, the sweep,
refunds of cancelled orders."""

from __future__ import annotations

import io
import uuid

from pypdf import PdfReader
from sqlalchemy import select, text, update

from refit.carriers.sandbox.carrier import tracking_number_for
from refit.models import OrderStatus, User
from refit.models.notification import OutboundEmail
from refit.orders.service import transition
from refit.shipping.tasks import sweep_labels
from tests.admin.helpers import operator_headers
from tests.orders.helpers import DEVICE
from tests.shipping.conftest import HOME
from tests.shipping.helpers import (
    buy,
    history,
    label_jobs,
    make_due,
    order_row,
    purchases,
    quote,
)


async def _verified(resources, seller, email):
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(User).where(User.id == seller.id).values(email=email, email_verified=True)
        )


async def test_sandbox_end_to_end(client, make_user, resources, run_jobs):
    """Done-when 2: order -> rates -> purchase-label -> a real worker -> awaiting_shipment with
    a label PDF that opens and carries the tracking number and both addresses."""
    seller, stranger = await make_user(), await make_user()
    await _verified(resources, seller, "ada@example.com")
    address = await client.post(
        "/api/shipping/addresses",
        json={
            **HOME,
            "street1": "500 Congress Ave",
            "city": "Austin",
            "state": "TX",
            "zip": "78701",
        },
        headers=seller.headers,
    )
    assert address.status_code == 201
    offer = await client.post("/api/quotes", json=DEVICE, headers=seller.headers)
    assert offer.status_code == 201, offer.text
    created = await client.post(
        "/api/orders/create",
        json={"quote_id": offer.json()["quote_id"], "shipping_address_id": address.json()["id"]},
        headers=seller.headers,
    )
    assert created.status_code == 201, created.text
    order = await order_row(resources, uuid.UUID(created.json()["id"]))
    assert order.device_category == "phone"
    rate = (await quote(client, seller, order.id))[1]
    accepted = await buy(client, seller, order.id, rate["rate_id"])
    assert accepted.status_code == 202
    assert accepted.json()["order"]["status"] == "processing_shipment"

    await run_jobs()

    seen = await client.get(f"/api/orders/{order.id}", headers=seller.headers)
    assert seen.status_code == 200
    assert seen.json()["status"] == "awaiting_shipment"
    assert seen.json()["tracking_number"] and seen.json()["label_error"] is None
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.AWAITING_SHIPMENT
    assert stored.tracking_number == tracking_number_for(stored.label_transaction_id)
    assert (stored.shipping_carrier, stored.shipping_service) == ("USPS", "Priority Mail")
    assert str(stored.shipping_cost) == rate["amount"]
    assert stored.label_url == f"http://testserver/api/shipping/labels/{order.id}"
    assert stored.label_purchased_at is not None and stored.label_error is None
    assert await history(resources, order.id) == [
        (None, "pending", f"user:{seller.id}"),
        ("pending", "processing_shipment", f"user:{seller.id}"),
        ("processing_shipment", "awaiting_shipment", "system:shipping.purchase_label"),
    ]
    [job] = await label_jobs(resources, order.id)
    assert (job.status, job.attempts) == ("succeeded", 1)  # procrastinate counts runs

    label = await client.get(f"/api/shipping/labels/{order.id}", headers=seller.headers)
    assert label.status_code == 200
    assert label.headers["content-type"] == "application/pdf"
    assert label.headers["cache-control"] == "private, no-store"
    pdf = PdfReader(io.BytesIO(label.content))
    page = pdf.pages[0]
    assert (float(page.mediabox.width), float(page.mediabox.height)) == (288.0, 432.0)  # 4x6 in
    words = page.extract_text()
    assert stored.tracking_number in words
    assert "500 CONGRESS AVE" in words and "215 CLAYTON ST" in words

    # Nobody else gets it: another seller, no token; operators through /api/admin.
    assert (
        await client.get(f"/api/shipping/labels/{order.id}", headers=stranger.headers)
    ).status_code == 404
    assert (await client.get(f"/api/shipping/labels/{order.id}")).status_code == 401
    assert (await client.get(f"/api/admin/orders/{order.id}/label")).status_code == 401
    operator = await client.get(
        f"/api/admin/orders/{order.id}/label", headers=await operator_headers(resources)
    )
    assert operator.status_code == 200 and operator.content == label.content

    # The seller's "label ready" email went through the queue (its send job was deferred by the
    # label job while the worker above was finishing: one more run sends it).
    await run_jobs()
    async with resources.sessionmaker() as session:
        emails = (
            await session.scalars(select(OutboundEmail).where(OutboundEmail.user_id == seller.id))
        ).all()
    assert [(e.template, e.recipient) for e in emails] == [("order_label_ready", "ada@example.com")]
    assert emails[0].sent_at is not None and emails[0].subject.startswith(
        "Your prepaid shipping label for order ORD-"
    )

    # Sandbox tracking: pre-transit at purchase; an operator can push it on.
    pushed = await client.post(
        f"/api/admin/orders/{order.id}/sandbox-tracking",
        json={"status": "TRANSIT"},
        headers=await operator_headers(resources, role="inspector"),
    )
    assert pushed.status_code == 204


async def test_carrier_fails_twice_then_succeeds(
    client, make_user, make_order, resources, run_jobs, shippo_settings, shippo_server
):
    """Done-when 3a: two ERROR transactions, then one label, bought on the third attempt."""
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    shippo_server.fail_next_transactions(2)
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202

    for expected_attempts in (1, 2):
        await run_jobs()  # runs the due attempt; the retry is scheduled 2 s, then 4 s, ahead
        [job] = await label_jobs(resources, order.id)
        assert (job.status, job.attempts) == ("todo", expected_attempts)
        assert (await order_row(resources, order.id)).status == OrderStatus.PROCESSING_SHIPMENT
        assert await make_due(resources) == 1
    await run_jobs()

    [job] = await label_jobs(resources, order.id)
    assert (job.status, job.attempts) == ("succeeded", 3)
    created = shippo_server.transactions_created()
    assert [t["status"] for t in created] == ["ERROR", "ERROR", "SUCCESS"]
    assert len(shippo_server.labels_bought()) == 1
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.AWAITING_SHIPMENT
    assert stored.label_transaction_id == created[2]["object_id"]
    assert stored.tracking_number == created[2]["tracking_number"]
    assert [(p.attempt, p.status) for p in await purchases(resources, order.id)] == [
        (1, "error"),
        (2, "error"),
        (3, "succeeded"),
    ]


async def test_carrier_fails_three_times_then_an_operator_retries(
    client, make_user, make_order, resources, run_jobs, shippo_settings, shippo_server
):
    """Done-when 3b: three failures use up the attempts; the seller and the operator see why;
    the operator's retry buys the label."""
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    shippo_server.fail_next_transactions(3)
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    await run_jobs()
    await make_due(resources)
    await run_jobs()
    await make_due(resources)
    await run_jobs()

    [job] = await label_jobs(resources, order.id)
    assert (job.status, job.attempts) == ("failed", 3)  # three runs in all, no fourth
    async with resources.sessionmaker() as session:
        errors = (
            await session.execute(
                text(
                    "SELECT attempt, error_type, message FROM job_errors WHERE job_id = :id "
                    "ORDER BY id"
                ),
                {"id": job.id},
            )
        ).all()
    assert [(e.attempt, e.error_type) for e in errors] == [
        (a, "LabelPurchaseFailed") for a in (1, 2, 3)
    ]
    assert "UPS API did not respond" in errors[-1].message
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.PROCESSING_SHIPMENT
    assert "UPS API did not respond" in stored.label_error
    # The seller's view of the order says what happened.
    seen = await client.get(f"/api/orders/{order.id}", headers=seller.headers)
    assert seen.json()["status"] == "processing_shipment"
    assert seen.json()["label_error"] == stored.label_error
    assert shippo_server.labels_bought() == []

    # The operator's view.
    operator = await operator_headers(resources)
    status = await client.get(f"/api/admin/orders/{order.id}/label-status", headers=operator)
    assert status.status_code == 200
    body = status.json()
    assert body["label_error"] == stored.label_error
    assert [p["status"] for p in body["purchases"]] == ["error", "error", "error"]
    assert body["purchases"][0]["messages"][0]["code"] == "carrier_timeout"
    assert body["jobs"][0]["status"] == "failed" and len(body["jobs"][0]["errors"]) == 3

    # The sweep leaves an order with a recorded failure to the operators.
    assert await sweep_labels(grace_seconds=0) == 0

    # An operator's write carries an Idempotency-Key like a seller's: a double click replays
    # the first answer (the same job) instead of acting twice.
    keyed = {**operator, "Idempotency-Key": "retry-label-1"}
    retried = await client.post(f"/api/admin/orders/{order.id}/retry-label", headers=keyed)
    assert retried.status_code == 202 and retried.json()["job_id"] is not None
    replayed = await client.post(f"/api/admin/orders/{order.id}/retry-label", headers=keyed)
    assert replayed.status_code == 202 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == retried.json()
    assert (await order_row(resources, order.id)).label_error is None
    await run_jobs()
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.AWAITING_SHIPMENT and stored.label_error is None
    assert len(shippo_server.labels_bought()) == 1
    assert len(shippo_server.transactions_created()) == 4
    # Retrying an order that has its label is refused.
    again = await client.post(f"/api/admin/orders/{order.id}/retry-label", headers=operator)
    assert again.status_code == 409
    assert (await client.post(f"/api/admin/orders/{order.id}/retry-label")).status_code == 401


async def test_queued_transaction_and_rate_limits_inside_the_job(
    client, make_user, make_order, resources, run_jobs, shippo_settings, shippo_server
):
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    shippo_server.queue_next_transactions(1, polls=2)
    shippo_server.rate_limit_next(1, reset_in=1)
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    await run_jobs()
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.AWAITING_SHIPMENT
    assert len(shippo_server.calls("POST", "/transactions")) == 2  # the 429, then the purchase
    assert len(shippo_server.labels_bought()) == 1
    (_, _, _, body) = shippo_server.calls("POST", "/transactions")[-1]
    assert body["metadata"] == f"order:{order.id}" and body["label_file_type"] == "PDF_4x6"
    label = await client.get(f"/api/shipping/labels/{order.id}", headers=seller.headers)
    assert stored.tracking_number in PdfReader(io.BytesIO(label.content)).pages[0].extract_text()


async def test_sweep_requeues_an_order_left_without_a_job(
    client, make_user, make_order, resources, run_jobs
):
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    assert await sweep_labels(grace_seconds=0) == 0  # its job is waiting: nothing to do
    # The job is lost (deleted by hand): the order would wait forever.
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(text("DELETE FROM procrastinate_jobs"))
    assert await sweep_labels(grace_seconds=3600) == 0  # too recent to call it stuck
    assert await sweep_labels(grace_seconds=0) == 1
    assert await sweep_labels(grace_seconds=0) == 0
    await run_jobs()
    assert (await order_row(resources, order.id)).status == OrderStatus.AWAITING_SHIPMENT


async def test_cancelling_after_the_label_refunds_it(
    client, make_user, make_order, resources, run_jobs, shippo_settings, shippo_server
):
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    await run_jobs()
    async with resources.sessionmaker() as session, session.begin():
        await transition(session, order.id, OrderStatus.CANCELLED, actor=f"user:{seller.id}")
    await run_jobs()
    [bought] = shippo_server.labels_bought()
    assert [r["transaction"] for r in shippo_server.state.refunds] == [bought["object_id"]]
    [row] = await purchases(resources, order.id)
    assert (row.status, row.refund_status) == ("refund_pending", "QUEUED")


async def test_a_purchase_that_timed_out_is_found_not_bought_again(
    client, make_user, make_order, resources, run_jobs, settings, shippo_settings, shippo_server
):
    """The carrier took the purchase but our request timed out (a retryable error): the next
    attempt waits for the carrier to settle, finds the transaction by rate, and adopts it."""
    settings.shippo_timeout_seconds = 1
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    shippo_server.hold_next_transaction()
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    await run_jobs()
    shippo_server.release()
    [job] = await label_jobs(resources, order.id)
    assert (job.status, job.attempts) == ("todo", 1)
    [row] = await purchases(resources, order.id)
    assert (row.status, row.transaction_id) == ("started", None)
    async with resources.sessionmaker() as session:
        [error] = (
            await session.execute(
                text("SELECT error_type FROM job_errors WHERE job_id = :id"), {"id": job.id}
            )
        ).all()
    assert error.error_type == "CarrierUnavailable"

    await make_due(resources)
    await run_jobs()
    [bought] = shippo_server.labels_bought()
    assert len(shippo_server.calls("POST", "/transactions")) == 1
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.AWAITING_SHIPMENT
    assert stored.label_transaction_id == bought["object_id"]


async def test_a_label_whose_download_fails_keeps_its_transaction(
    client, make_user, make_order, resources, run_jobs, shippo_settings, shippo_server
):
    """The carrier answered SUCCESS and the label's download failed: the answer, which would
    have gone with the stored label, is committed alone (the order points at the
    transaction), and the retry downloads that label, buying and searching nothing."""
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    shippo_server.fail_next_label_downloads(1)
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    await run_jobs()

    [bought] = shippo_server.labels_bought()
    [job] = await label_jobs(resources, order.id)
    assert (job.status, job.attempts) == ("todo", 1)
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.PROCESSING_SHIPMENT
    assert stored.label_transaction_id == bought["object_id"]
    assert not stored.label_file_key
    assert [(p.status, p.transaction_id) for p in await purchases(resources, order.id)] == [
        ("succeeded", bought["object_id"])
    ]

    assert await make_due(resources) == 1
    await run_jobs()
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.AWAITING_SHIPMENT
    assert stored.label_transaction_id == bought["object_id"]
    assert stored.label_file_key
    assert len(shippo_server.calls("POST", "/transactions")) == 1
    assert shippo_server.state.list_queries == []  # no search for a lost purchase
    [job] = await label_jobs(resources, order.id)
    assert (job.status, job.attempts) == ("succeeded", 2)


async def test_cancelled_before_the_job_ran_buys_nothing(
    client, make_user, make_order, resources, run_jobs, shippo_settings, shippo_server
):
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202
    async with resources.sessionmaker() as session, session.begin():
        await transition(session, order.id, OrderStatus.CANCELLED, actor=f"user:{seller.id}")
    await run_jobs()
    assert shippo_server.transactions_created() == []
    assert shippo_server.state.refunds == []
    [job] = await label_jobs(resources, order.id)
    assert job.status == "succeeded"  # it ran, saw the cancellation, and did nothing
    assert (await order_row(resources, order.id)).status == OrderStatus.CANCELLED
