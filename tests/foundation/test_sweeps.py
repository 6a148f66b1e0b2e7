"""The sweeps' one step (refit/sweeps.py) on a real database and queue: a row whose job died is
given it again, at most REFIT_SWEEP_MAX_ATTEMPTS times; the next time it is found stuck it is
flagged instead, once: an error log line, refit_sweep_gave_up_total and the row's own mark.
The four sweeps (labels, return labels, payouts, webhooks) all go through it.

A job dies here as it does in production, out of attempts: its status becomes `failed`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from refit.models import Order, User
from refit.orders.follow_ups import PURCHASE_LABEL, PURCHASE_RETURN_LABEL
from refit.payouts import service as payouts
from refit.payouts import tasks as payout_tasks
from refit.resources import Resources
from refit.settings import Settings
from refit.shipping import tasks as shipping_tasks
from refit.shipping import webhook_tasks
from refit.shipping.webhooks import HANDLE_TASK
from refit.sweeps import gave_up_reason
from tests.foundation.test_request_middleware import json_log  # noqa: F401  (a fixture)

MAX = 2


async def _scalar(resources: Resources, sql: str, **values: object) -> object:
    async with resources.sessionmaker() as session, session.begin():
        return await session.scalar(text(sql), values)


async def _execute(resources: Resources, sql: str, **values: object) -> None:
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(text(sql), values)


async def _order(resources: Resources, status: str) -> uuid.UUID:
    """An order already in `status` (put there in SQL: the sweep reads the row, not its past)."""
    async with resources.sessionmaker() as session, session.begin():
        user = User(wallet_address=f"test{uuid.uuid4().hex}")
        session.add(user)
        await session.flush()
        order = Order(
            user_id=user.id,
            device_brand="Apple",
            device_model="iPhone 13",
            device_condition="good",
            quoted_price_usd=Decimal("412.50"),
            quoted_price_sol=Decimal("2.7500"),
        )
        session.add(order)
        await session.flush()
        await session.execute(
            text("UPDATE orders SET status = :status WHERE id = :id"),
            {"status": status, "id": order.id},
        )
        return order.id


async def _label_order(resources: Resources) -> uuid.UUID:
    return await _order(resources, "processing_shipment")


async def _returning_order(resources: Resources) -> uuid.UUID:
    return await _order(resources, "returning")


async def _payout(resources: Resources, error: str | None = None) -> uuid.UUID:
    """A pending payout (keyed, as its job is, by its order's id)."""
    order_id = await _order(resources, "inspecting")
    await _execute(
        resources,
        "INSERT INTO payouts (order_id, amount_usd, recipient, treasury, reference, "
        "requested_by, error) VALUES (:order_id, 412.50, 'recipient', 'treasury', :reference, "
        "'operator:admin', :error)",
        order_id=order_id,
        reference=uuid.uuid4().hex,
        error=error,
    )
    return order_id


async def _webhook(resources: Resources) -> uuid.UUID:
    inbox_id = await _scalar(
        resources,
        "INSERT INTO webhook_inbox (provider, dedupe_key, body) "
        "VALUES ('shippo', :key, '{}') RETURNING id",
        key=uuid.uuid4().hex,
    )
    assert isinstance(inbox_id, uuid.UUID)
    return inbox_id


async def _attention(resources: Resources, order_id: uuid.UUID) -> object:
    return await _scalar(
        resources, "SELECT attention_reason FROM orders WHERE id = :id", id=order_id
    )


async def _payout_error(resources: Resources, order_id: uuid.UUID) -> object:
    return await _scalar(resources, "SELECT error FROM payouts WHERE order_id = :id", id=order_id)


async def _webhook_error(resources: Resources, inbox_id: uuid.UUID) -> object:
    return await _scalar(resources, "SELECT error FROM webhook_inbox WHERE id = :id", id=inbox_id)


@dataclass(frozen=True)
class Kind:
    name: str
    task: str
    job_arg: str
    make: Callable[[Resources], Awaitable[uuid.UUID]]
    sweep: Callable[[], Awaitable[int]]  # every row past its grace
    mark: Callable[[Resources, uuid.UUID], Awaitable[object]]  # where an operator sees the flag


KINDS = [
    Kind(
        "labels",
        PURCHASE_LABEL.task,
        "order_id",
        _label_order,
        lambda: shipping_tasks.sweep_labels(grace_seconds=0),
        _attention,
    ),
    Kind(
        "returns",
        PURCHASE_RETURN_LABEL.task,
        "order_id",
        _returning_order,
        lambda: shipping_tasks.sweep_returns(grace_seconds=0),
        _attention,
    ),
    Kind(
        "payouts",
        payouts.SEND_TASK,
        "order_id",
        _payout,
        lambda: payout_tasks.sweep(grace_seconds=0),
        _payout_error,
    ),
    Kind(
        "webhooks",
        HANDLE_TASK,
        "inbox_id",
        _webhook,
        lambda: webhook_tasks.sweep_webhooks(after_seconds=0),
        _webhook_error,
    ),
]


async def _jobs(resources: Resources, kind: Kind, row_id: uuid.UUID) -> int:
    n = await _scalar(
        resources,
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task "
        "AND args ->> :arg = :row_id",
        task=kind.task,
        arg=kind.job_arg,
        row_id=str(row_id),
    )
    assert isinstance(n, int)
    return n


async def _die(resources: Resources, task: str) -> None:
    """The waiting job runs out of attempts."""
    await _execute(
        resources,
        "UPDATE procrastinate_jobs SET status = 'failed' WHERE task_name = :task "
        "AND status = 'todo'",
        task=task,
    )


async def _counted(resources: Resources, task: str, row_id: uuid.UUID) -> tuple[int, bool]:
    async with resources.sessionmaker() as session:
        attempts, gave_up = (
            await session.execute(
                text(
                    "SELECT attempts, gave_up_at IS NOT NULL FROM sweep_attempts "
                    "WHERE task = :task AND row_id = :row_id"
                ),
                {"task": task, "row_id": row_id},
            )
        ).one()
    return attempts, gave_up


def _gave_up_total(task: str) -> float:
    return REGISTRY.get_sample_value("refit_sweep_gave_up_total", {"task": task}) or 0.0


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
async def test_each_sweep_requeues_a_dead_job_at_most_the_maximum_then_flags_its_row(
    resources: Resources, settings: Settings, kind: Kind
) -> None:
    settings.sweep_max_attempts = MAX
    row_id = await kind.make(resources)
    for attempt in range(1, MAX + 1):
        assert await kind.sweep() == 1
        assert await kind.sweep() == 0  # its job is waiting: neither queued nor counted twice
        assert await _counted(resources, kind.task, row_id) == (attempt, False)
        await _die(resources, kind.task)
    assert await kind.mark(resources, row_id) is None

    # Found stuck once more (the MAX + 1th time): no job, the row flagged where operators look.
    assert await kind.sweep() == 0
    assert await _jobs(resources, kind, row_id) == MAX
    assert await _counted(resources, kind.task, row_id) == (MAX, True)
    assert gave_up_reason(kind.task, MAX) in str(await kind.mark(resources, row_id))
    # And left alone from then on.
    assert await kind.sweep() == 0
    assert await _jobs(resources, kind, row_id) == MAX


async def test_a_row_given_up_on_is_logged_and_counted_once(
    resources: Resources,
    settings: Settings,
    json_log,  # noqa: F811  (the fixture)
) -> None:
    settings.sweep_max_attempts = 1
    inbox_id = await _webhook(resources)
    before = _gave_up_total(HANDLE_TASK)

    assert await webhook_tasks.sweep_webhooks(after_seconds=0) == 1
    await _die(resources, HANDLE_TASK)
    assert await webhook_tasks.sweep_webhooks(after_seconds=0) == 0
    assert await webhook_tasks.sweep_webhooks(after_seconds=0) == 0

    assert _gave_up_total(HANDLE_TASK) == before + 1
    lines, _ = json_log
    said = [line for line in lines() if str(line.get("event", "")).startswith("sweep.")]
    assert [(line["event"], line["level"]) for line in said] == [
        ("sweep.requeued", "warning"),
        ("sweep.gave_up", "error"),
    ]
    assert said[0]["task"] == HANDLE_TASK and said[0]["rows"] == [str(inbox_id)]
    assert said[1]["task"] == HANDLE_TASK and said[1]["row_id"] == str(inbox_id)
    assert said[1]["attempts"] == 1


async def test_a_row_that_is_not_stuck_is_neither_requeued_nor_counted(
    resources: Resources, settings: Settings
) -> None:
    settings.sweep_max_attempts = MAX
    order_id = await _label_order(resources)
    assert await shipping_tasks.sweep_labels(grace_seconds=3600) == 0  # too recent
    assert await _scalar(resources, "SELECT count(*) FROM sweep_attempts") == 0
    await _execute(
        resources, "UPDATE orders SET status = 'awaiting_shipment' WHERE id = :id", id=order_id
    )
    assert await shipping_tasks.sweep_labels(grace_seconds=0) == 0  # moved on
    assert await _scalar(resources, "SELECT count(*) FROM sweep_attempts") == 0


async def test_a_held_payout_is_rerun_at_most_the_maximum_and_stays_counted_as_held(
    client, resources: Resources, settings: Settings
) -> None:
    # Held (the treasury too low): its job ends each time with the payout still pending.
    settings.sweep_max_attempts = MAX
    order_id = await _payout(resources, error=payouts.TREASURY_TOO_LOW)
    for _ in range(MAX):
        assert await payout_tasks.sweep(grace_seconds=0) == 1
        await _die(resources, payouts.SEND_TASK)
    assert await payout_tasks.sweep(grace_seconds=0) == 0
    assert await payout_tasks.sweep(grace_seconds=0) == 0

    error = str(await _payout_error(resources, order_id))
    # The reason it is held first, then the sweep's: still a payout waiting for the treasury.
    assert error == f"{payouts.TREASURY_TOO_LOW}; {gave_up_reason(payouts.SEND_TASK, MAX)}"
    exposition = (await client.get("/metrics")).text
    held = {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert held["refit_payouts_treasury_too_low"] == 1
