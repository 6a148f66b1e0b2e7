"""Each status a seller hears about sends its email, rendered from the order, to the seller's
verified address (the outbox folder here: no SMTP configured)."""

import email
import email.policy
import uuid

from sqlalchemy import func, update

from refit.models import Order, OrderStatus, User
from refit.orders.follow_ups import STATUS_EMAILS
from tests.orders.helpers import operator_move, place_order

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
