"""DW8: the daily cap against two payout jobs signing at once, the race forced rather than
hoped for. Both jobs are stopped inside their signing transaction, each holding its own payout
row, just before the cap is read (at the sanctions screening, a table the test locks), then
let go together: without the advisory lock in `daily_cap_allows` both read an empty day and
both sign; with it the second reads the first's signature and waits."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from sqlalchemy import text

from refit.payouts import tasks
from tests.locks import backend_pid, wait_until_waiting_on_lock
from tests.payouts.conftest import as_quoted_order, pay, payout_row, transfers_for


async def test_two_jobs_let_go_at_the_cap_check_sign_once(
    client, resources, make_user, paying, settings
):
    settings.payout_daily_max_usd = Decimal("500")  # one $442 payout fits, two do not
    orders = [(await as_quoted_order(client, resources, make_user, paying))[0] for _ in range(2)]
    for order_id in orders:
        assert (await pay(client, order_id, paying.admin)).status_code == 202

    async with resources.sessionmaker() as gate:
        await gate.execute(text("LOCK TABLE sanctions_list IN ACCESS EXCLUSIVE MODE"))
        holder = await backend_pid(gate)
        jobs = [asyncio.create_task(tasks.send_payout(uuid.UUID(order_id))) for order_id in orders]
        await wait_until_waiting_on_lock(resources.engine, count=2, blocked_by=holder)
        await gate.rollback()
    results = await asyncio.gather(*jobs, return_exceptions=True)

    assert results.count("finalized") == 1, results
    assert sum(isinstance(r, tasks.DailyCapReached) for r in results) == 1, results
    rows = [await payout_row(resources, order_id) for order_id in orders]
    waiting = [p for p in rows if p.signed_tx is None]
    assert len(waiting) == 1 and waiting[0].error == "daily cap reached"
    assert await transfers_for(paying.ledger, waiting[0].reference) == []
