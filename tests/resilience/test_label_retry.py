"""A carrier outage longer than a few seconds needs no operator: the label job retries
transient failures on a schedule growing to minutes, and past its last attempt the order is
left to the sweep (no label_error), which queues the job again; once the carrier is back the
label is bought. A definite failure is still the operators' after three runs
(tests/shipping/test_label_job.py)."""

from __future__ import annotations

import itertools

from sqlalchemy import text

from refit.models import OrderStatus
from refit.shipping.tasks import LABEL_ATTEMPTS, LABEL_TRANSIENT_ATTEMPTS, sweep_labels
from tests.shipping.conftest import make_order, shippo_server, shippo_settings  # noqa: F401
from tests.shipping.helpers import buy, label_jobs, make_due, order_row, quote

CARRIER_DOWN_FOR_AN_HOUR = 3600  # a Retry-After longer than any job waits in place


async def _seconds_until_due(resources, job_id: int) -> float:
    async with resources.sessionmaker() as session:
        return float(
            await session.scalar(
                text(
                    "SELECT EXTRACT(EPOCH FROM scheduled_at - now()) FROM procrastinate_jobs "
                    "WHERE id = :id"
                ),
                {"id": job_id},
            )
        )


async def test_a_long_carrier_outage_is_retried_then_swept_not_parked(
    client,
    make_user,
    make_order,  # noqa: F811
    resources,
    run_jobs,
    shippo_settings,  # noqa: F811
    shippo_server,  # noqa: F811
):
    seller = await make_user()
    order = await make_order(seller)
    rate_id = (await quote(client, seller, order.id))[0]["rate_id"]
    shippo_server.throttle(CARRIER_DOWN_FOR_AN_HOUR)
    assert (await buy(client, seller, order.id, rate_id)).status_code == 202

    waits = []
    for attempt in range(1, LABEL_TRANSIENT_ATTEMPTS + 1):
        await run_jobs()
        [job] = await label_jobs(resources, order.id)
        if attempt < LABEL_TRANSIENT_ATTEMPTS:
            assert (job.status, job.attempts) == ("todo", attempt)
            waits.append(await _seconds_until_due(resources, job.id))
            await make_due(resources)  # the wait passes in SQL
    assert (job.status, job.attempts) == ("failed", LABEL_TRANSIENT_ATTEMPTS)
    assert LABEL_TRANSIENT_ATTEMPTS > LABEL_ATTEMPTS
    # Waits double, to minutes by the last one.
    assert all(later > earlier for earlier, later in itertools.pairwise(waits))
    assert waits[-1] > 120
    # Not parked for an operator: no error shown, the order still waits for its label.
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.PROCESSING_SHIPMENT and stored.label_error is None

    # The sweep queues it again (grace 0: the order has waited long enough); the carrier is
    # back; the label is bought.
    assert await sweep_labels(grace_seconds=0) == 1
    shippo_server.throttle(None)
    await run_jobs()
    stored = await order_row(resources, order.id)
    assert stored.status == OrderStatus.AWAITING_SHIPMENT and stored.label_error is None
    assert len(shippo_server.labels_bought()) == 1
