"""Each way out happens once however many admins click at the same moment: fifty retries of
one failed payout sent together make one move (202) and 49 refusals (409), one event, one
job; fifty cancels likewise."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import func, select

from refit.models.payout import PayoutEvent, PayoutStatus
from tests.payouts.conftest import as_quoted_order, count, pay, payout_row
from tests.payouts.test_states import _put as put_payout

AT_ONCE = 50


async def _moves(resources, payout_id, to_status: PayoutStatus) -> int:
    async with resources.sessionmaker() as session:
        found = await session.scalar(
            select(func.count())
            .select_from(PayoutEvent)
            .where(PayoutEvent.payout_id == payout_id, PayoutEvent.to_status == to_status)
        )
    return int(found or 0)


async def test_fifty_retries_at_once_move_a_failed_payout_once(
    client, resources, make_user, paying
):
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    payout = await payout_row(resources, order_id)
    await put_payout(resources, payout.id, PayoutStatus.FAILED)
    pending_before = await _moves(resources, payout.id, PayoutStatus.PENDING)

    url = f"/api/admin/payouts/{payout.id}/retry"
    answers = await asyncio.gather(
        *(client.post(url, headers=paying.admin.headers) for _ in range(AT_ONCE))
    )
    assert Counter(a.status_code for a in answers) == {202: 1, 409: AT_ONCE - 1}
    assert (await payout_row(resources, order_id)).status == "pending"
    assert await _moves(resources, payout.id, PayoutStatus.PENDING) == pending_before + 1
    sends = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'payouts.send_payout'"
    assert await count(resources, sends + " AND status = 'todo'") == 1


async def test_fifty_cancels_at_once_cancel_once(client, resources, make_user, paying):
    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    payout = await payout_row(resources, order_id)
    await put_payout(resources, payout.id, PayoutStatus.FAILED)

    url = f"/api/admin/payouts/{payout.id}/cancel"
    answers = await asyncio.gather(
        *(client.post(url, headers=paying.admin.headers) for _ in range(AT_ONCE))
    )
    assert Counter(a.status_code for a in answers) == {200: 1, 409: AT_ONCE - 1}
    assert await _moves(resources, payout.id, PayoutStatus.CANCELLED) == 1
