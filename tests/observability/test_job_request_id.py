"""A request id travels into the jobs the request defers, and on into the jobs those defer:
each of their log lines names the request that caused them."""

from __future__ import annotations

from sqlalchemy import text

from refit import tracing
from tests.observability.test_flow import LABEL_TASK, sell_and_buy_label


async def test_a_deferred_jobs_log_lines_carry_the_request_id_that_deferred_it(
    json_log, client, resources, run_jobs
):
    assert not tracing.enabled()
    bought = await sell_and_buy_label(client, **{"X-Request-ID": "purchase-req-42"})
    assert bought.headers["x-request-id"] == "purchase-req-42"
    async with resources.sessionmaker() as session:
        origin = await session.scalar(
            text("SELECT args -> '_origin' FROM procrastinate_jobs WHERE task_name = :task"),
            {"task": LABEL_TASK},
        )
    # Tracing off: the request id alone, no trace context.
    assert origin == {"request_id": "purchase-req-42"}

    await run_jobs()

    lines = json_log()
    label_job = [line for line in lines if line.get("task") == LABEL_TASK and "job_id" in line]
    assert any(line["event"] == "shipping.purchase_label_done" for line in label_job)
    assert {line.get("request_id") for line in label_job} == {"purchase-req-42"}
    # The label-ready notice the label job deferred ran with the same request id.
    notice = [line for line in lines if line.get("task") == "notifications.notify_user"]
    assert notice and {line.get("request_id") for line in notice} == {"purchase-req-42"}
    # Jobs nobody requested (the periodic sweeps) carry none.
    unrequested = [
        line
        for line in lines
        if str(line.get("task", "")).endswith("sweep_labels") and "job_id" in line
    ]
    assert all("request_id" not in line for line in unrequested)
