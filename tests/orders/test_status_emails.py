"""Each status a seller hears about sends its email, rendered from the order, to the seller's
verified address (the outbox folder, or a real SMTP server), exactly once per status entered;
the label-ready email carries the stored label."""

import email
import email.policy
import uuid

from sqlalchemy import func, select, text, update

from refit.models import Order, OrderStatus, User
from refit.models.notification import OutboundEmail
from refit.orders.follow_ups import STATUS_EMAILS
from refit.storage import label_storage
from tests.notifications.smtp_server import smtp_server
from tests.orders.helpers import operator_move, place_order
from tests.shipping.helpers import buy, order_row
from tests.shipping.helpers import quote as shipping_rates

S = OrderStatus
TO_RECEIVED = [S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT, S.SHIPPED, S.RECEIVED]


def _outbox(settings) -> list[email.message.EmailMessage]:
    folder = settings.outbox_dir
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


async def test_every_status_email_is_sent_rendered(
    client, resources, settings, make_user, run_jobs
):
    seller = await make_user(email="ada@example.com")
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == seller.id).values(email_verified=True))

    returned = uuid.UUID((await place_order(client, resources, seller))["id"])
    paid = uuid.UUID((await place_order(client, resources, seller))["id"])
    cancelled = uuid.UUID((await place_order(client, resources, seller))["id"])
    for order_id in (returned, paid):
        async with resources.sessionmaker() as session, session.begin():
            await session.execute(
                update(Order)
                .where(Order.id == order_id)
                .values(final_price_usd=250, tracking_number="9400TEST")
            )
        for status in [*TO_RECEIVED, S.INSPECTING, S.OFFER_PENDING]:
            await operator_move(resources, order_id, status)
    await operator_move(resources, returned, S.RETURNING)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order).where(Order.id == paid).values(offer_accepted_at=func.now())
        )
    await operator_move(resources, paid, S.COMPLETED)
    await operator_move(resources, cancelled, S.CANCELLED)
    await run_jobs()
    await run_jobs()

    subjects = [m["Subject"] for m in _outbox(settings)]
    assert all(m["To"] == "ada@example.com" for m in _outbox(settings))
    for template in STATUS_EMAILS.values():
        assert any(template_subject_hint(template) in s for s in subjects), (template, subjects)
    offer = next(m for m in _outbox(settings) if "revised offer" in m["Subject"])
    text = offer.get_body(preferencelist=("plain",)).get_content()
    assert "$250.00" in text and "never accept a revised offer for you" in text


def template_subject_hint(template: str) -> str:
    return {
        "order_label_ready": "shipping label",
        "order_shipped": "on its way to us",
        "order_received": "We received your",
        "order_offer_pending": "revised offer",
        "order_returning": "on its way back",
        "order_completed": "You have been paid",
        "order_cancelled": "is cancelled",
    }[template]


async def test_no_email_without_a_verified_address(
    client, resources, settings, make_user, run_jobs
):
    seller = await make_user(email="unverified@example.com")
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    await operator_move(resources, order_id, S.CANCELLED)
    await run_jobs()
    assert _outbox(settings) == []


async def _verified_seller(resources, make_user):
    seller = await make_user(email="ada@example.com")
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == seller.id).values(email_verified=True))
    return seller


async def test_the_label_is_attached_and_shipping_is_announced_over_smtp(
    client, resources, settings, make_user, run_jobs
):
    seller = await _verified_seller(resources, make_user)
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    async with smtp_server() as smtp:
        settings.smtp_url = smtp.url
        rate = (await shipping_rates(client, seller, order_id))[0]
        assert (await buy(client, seller, order_id, rate["rate_id"])).status_code == 202
        await run_jobs()  # the sandbox label job, then the label-ready email
        order = await order_row(resources, order_id)
        assert order.status == S.AWAITING_SHIPMENT and order.label_file_key
        [ready] = smtp.messages

        shipped = await client.post(f"/api/orders/{order_id}/ship", headers=seller.headers)
        assert shipped.status_code == 200, shipped.text
        await run_jobs()
    assert len(smtp.messages) == 2

    assert ready.rcpt_tos == ["ada@example.com"]
    assert ready.message["Subject"] == (
        f"Your prepaid shipping label for order {order.order_number} is ready"
    )
    [label] = list(ready.message.iter_attachments())
    assert label.get_filename() == f"refit-label-{order.order_number}.pdf"
    assert label.get_content_type() == "application/pdf"
    stored = await label_storage(settings).get(order.label_file_key)
    assert stored.startswith(b"%PDF") and label.get_content() == stored
    assert "It is attached to this email" in ready.text()

    on_its_way = smtp.messages[1]
    assert on_its_way.message["Subject"] == (
        f"Your Apple iPhone 15 Pro is on its way to us (order {order.order_number})"
    )
    assert order.tracking_number and order.shipping_carrier
    assert f"Tracking number: {order.tracking_number} ({order.shipping_carrier})" in (
        on_its_way.text()
    )
    assert order.tracking_number in on_its_way.html()
    assert list(on_its_way.message.iter_attachments()) == []


async def test_a_status_entered_once_is_mailed_once_when_its_job_runs_again(
    client, resources, settings, make_user, run_jobs
):
    seller = await _verified_seller(resources, make_user)
    order_id = uuid.UUID((await place_order(client, resources, seller))["id"])
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(tracking_number="9400TEST", shipping_carrier="USPS")
        )
    for status in (S.PROCESSING_SHIPMENT, S.AWAITING_SHIPMENT, S.SHIPPED):
        await operator_move(resources, order_id, status)
    await run_jobs()

    async def shipped_emails() -> list[OutboundEmail]:
        async with resources.sessionmaker() as session:
            query = select(OutboundEmail).where(OutboundEmail.template == "order_shipped")
            return list(await session.scalars(query))

    [first] = await shipped_emails()
    assert first.sent_at is not None
    # Every notify job run again, as after its worker died between the job's commit and
    # procrastinate recording it done: each finds the email it queued, none queues another.
    async with resources.sessionmaker() as session, session.begin():
        rerun = await session.execute(
            text(
                "UPDATE procrastinate_jobs SET status = 'todo' "
                "WHERE task_name = 'notifications.notify_user'"
            )
        )
    assert rerun.rowcount == 2  # label ready, shipped (processing_shipment sends none)
    await run_jobs()

    assert [e.id for e in await shipped_emails()] == [first.id]
    shipped = [m for m in _outbox(settings) if "on its way to us" in m["Subject"]]
    assert len(shipped) == 1 and len(_outbox(settings)) == 2
    assert (
        "Tracking number: 9400TEST (USPS)"
        in shipped[0].get_body(preferencelist=("plain",)).get_content()
    )
    async with resources.sessionmaker() as session:
        jobs = (
            await session.execute(
                text(
                    "SELECT task_name, status FROM procrastinate_jobs "
                    "WHERE task_name LIKE 'notifications.%' ORDER BY id"
                )
            )
        ).all()
    assert sorted(tuple(j) for j in jobs) == sorted(
        [("notifications.notify_user", "succeeded")] * 2
        + [("notifications.send_email", "succeeded")] * 2
    )
