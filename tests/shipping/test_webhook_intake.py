"""The intake's one statement: the body kept as sent (the same jsonb json.loads read), its job
in the same transaction with the row's id, a body PostgreSQL could not store as jsonb kept as
unreadable (never a 500), and the route served first, still named in metrics."""

from __future__ import annotations

import json

from sqlalchemy import select, text

from refit import metrics
from refit.models.shipping import WebhookInbox
from refit.settings import DEV_WEBHOOK_TOKEN
from refit.shipping.webhooks import HANDLE_TASK
from tests.shipping.test_webhooks import track_updated

URL = f"/api/webhooks/shippo?token={DEV_WEBHOOK_TOKEN}"
ROUTE = "/api/webhooks/shippo"


def _served(status: str) -> float:
    return metrics.HTTP_REQUESTS.labels("POST", ROUTE, status)._value.get()


async def test_the_body_is_kept_as_sent_and_its_job_names_the_row(client, resources):
    body = track_updated("9400TESTKEPT", "TRANSIT")
    # Spaces, unicode and a big number: stored as PostgreSQL reads the bytes, equal to
    # what json.loads reads from them.
    body["data"]["address_to"]["city"] = "São Paulo ✓"
    body["data"]["big"] = 12345678901234567890123
    raw = json.dumps(body, indent=2, ensure_ascii=False).encode()
    before = _served("200")
    response = await client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json() == {"status": "accepted"}
    assert _served("200") == before + 1  # counted under the route's own name
    again = await client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert again.json() == {"status": "duplicate"}
    async with resources.sessionmaker() as session:
        (row,) = (await session.scalars(select(WebhookInbox))).all()
        jobs = (
            await session.execute(
                text(
                    "SELECT task_name, queue_name, status, args FROM procrastinate_jobs "
                    "WHERE task_name = :task"
                ),
                {"task": HANDLE_TASK},
            )
        ).all()
    assert row.body == json.loads(raw) and row.raw_body is None and row.error is None
    assert row.event == "track_updated" and row.test is True
    assert row.dedupe_key.startswith("track_updated:usps:9400TESTKEPT:")
    assert len(jobs) == 1
    task_name, queue_name, status, args = jobs[0]
    assert (task_name, queue_name, status) == (HANDLE_TASK, "default", "todo")
    assert args["inbox_id"] == str(row.id)


async def test_nan_infinity_and_non_utf8_are_kept_unreadable_not_refused_by_the_database(
    client, resources
):
    raws = [
        b'{"event": "track_updated", "test": true, "data": {"tracking_number": "1", "x": NaN}}',
        b'{"event": "track_updated", "data": {"tracking_number": "2", "x": -Infinity}}',
        b'{"event": "track_updated", "data": {"tracking_number": "3", "city": "\xff"}}',
    ]
    for raw in raws:
        response = await client.post(URL, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 200 and response.json() == {"status": "kept"}
    async with resources.sessionmaker() as session:
        rows = (await session.scalars(select(WebhookInbox))).all()
        jobs = await session.scalar(text("SELECT count(*) FROM procrastinate_jobs"))
    assert len(rows) == 3 and jobs == 0
    assert all(r.body is None and r.error.startswith("not JSON") for r in rows)
    assert {r.raw_body.split('"tracking_number": "')[1][0] for r in rows} == {"1", "2", "3"}


async def test_a_get_on_the_intake_is_405_and_a_form_is_415(client):
    assert (await client.get(URL)).status_code == 405
    response = await client.post(URL, data={"event": "track_updated"})
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
