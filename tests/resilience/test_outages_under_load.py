"""Issue 15, done-when 2: the real `refit run` (its API and worker processes), connected to
PostgreSQL and Redis through proxies the test cuts, under a steady load of sellers: PostgreSQL
down for 5 s, then 60 s, then Redis down for 5 s. During each outage requests are answered 503
(never 500, never a dropped connection); afterwards every accepted order exists once, every
label job has finished, and the API and worker processes never died: they reconnected. The
proxies front TCP or the embedded default's unix sockets alike."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest
from sqlalchemy import text

from refit.auth.tokens import issue_access_token
from tests.orders.helpers import add_address
from tests.processes import free_port as _free_port
from tests.processes import start_refit, stop_refit
from tests.processes import until as _until
from tests.resilience.load import TRANSPORT_ERROR, Load
from tests.resilience.pg_proxy import CuttableProxy
from tests.shipping.helpers import make_due

# (which proxy, seconds down): the outage lengths are the test's input.
OUTAGES = [("database", 5), ("database", 60), ("redis", 5)]
SELLERS = 3
ANSWERED = {200, 201, 202, 503}


@pytest.mark.timeout(600)
async def test_outages_under_load(resources, settings, make_user, tmp_path):
    assert settings.database_url and settings.redis_url
    proxies = {
        "database": await CuttableProxy.for_database(settings.database_url).start(),
        "redis": await CuttableProxy.for_redis(settings.redis_url).start(),
    }
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REFIT_")},
        "REFIT_ENV": "test",
        "REFIT_DATABASE_URL": proxies["database"].database_url(settings.database_url),
        "REFIT_REDIS_URL": proxies["redis"].redis_url(settings.redis_url),
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_DATA_DIR": str(tmp_path / "data"),
        "REFIT_PORT": str(port),
        "REFIT_PUBLIC_URL": base,
        "REFIT_LOG_FORMAT": "json",
        # Payouts are not part of this load: no local ledger.
        "REFIT_SOLANA_RPC_URL": "http://127.0.0.1:9",
        "REFIT_WORKER_HEARTBEAT_SECONDS": "0.5",
        "REFIT_WORKER_STALLED_AFTER_SECONDS": "3",
        # The load is a few requests a second per seller; the limits are not what is tested.
        "REFIT_RATE_LIMIT_SELLER_REQUESTS": "10000/minute",
        "REFIT_RATE_LIMIT_QUOTES_PER_SELLER": "10000/minute",
        "REFIT_RATE_LIMIT_ORDERS_PER_SELLER": "10000/minute",
        "REFIT_RATE_LIMIT_LABEL_PURCHASES_PER_SELLER": "10000/minute",
    }
    # Tokens are issued for the API they are sent to (the issuer is its public URL).
    api_settings = settings.model_copy(update={"public_url": base})
    sellers = []
    for _ in range(SELLERS):
        seller = await make_user()
        token = issue_access_token(api_settings, seller.id).token
        headers = {"Authorization": f"Bearer {token}"}
        sellers.append((headers, await add_address(resources, seller.id)))
    load = Load(base, sellers)
    log_path = tmp_path / "refit-run.log"
    process = start_refit(["run"], env, log_path)
    windows: list[tuple[str, float, float]] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:

            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await _until("starting", ready, process, log_path, timeout=240)
            running = asyncio.create_task(load.run())

            async def ordering_since(count: int) -> bool:
                return len(load.orders) > count

            await _until("placing a first order", lambda: ordering_since(0), process, log_path, 60)
            for name, seconds in OUTAGES:
                proxies[name].cut()
                cut_at = time.monotonic()
                await asyncio.sleep(seconds)  # the outage itself
                proxies[name].restore()
                windows.append((f"{name} {seconds} s", cut_at, time.monotonic()))
                placed = len(load.orders)
                await _until(
                    f"placing an order after the {name} came back",
                    lambda placed=placed: ordering_since(placed),
                    process,
                    log_path,
                    timeout=120,
                )
            load.stopping.set()
            await running

            # Every label accepted is bought: the worker recovered by itself. Retries scheduled
            # minutes ahead are made due (time passes in SQL), so the wait stays bounded.
            async def labels_done() -> bool:
                await make_due(resources)
                async with resources.sessionmaker() as session:
                    pending = await session.scalar(
                        text(
                            "SELECT count(*) FROM procrastinate_jobs "
                            "WHERE task_name = 'shipping.purchase_label' "
                            "AND status <> 'succeeded'"
                        )
                    )
                    unbought = await session.scalar(
                        text(
                            "SELECT count(*) FROM orders WHERE id = ANY(CAST(:ids AS uuid[])) "
                            "AND label_file_key IS NULL"
                        ),
                        {"ids": load.labels},
                    )
                return pending == 0 and unbought == 0

            await _until("buying every accepted label", labels_done, process, log_path, 240)
            after = await http.get("/readyz")
            assert after.status_code == 200, after.text
            assert after.json()["workers"]["alive"] >= 1
    finally:
        load.stopping.set()
        await stop_refit(process)
        for proxy in proxies.values():
            await proxy.stop()
        print(log_path.read_text()[-8000:])  # shown on failure

    # What was answered, per outage and in all: (request, status) -> how many.
    seen = {name: load.summary(start, end) for name, start, end in windows}
    seen["in all"] = load.summary()
    crashes = [a for a in load.answers if a.status not in ANSWERED]
    # No 500, no dropped connection, nothing else either.
    assert not crashes, (crashes[:5], seen)
    assert not [a for a in load.answers if a.status == TRANSPORT_ERROR]
    for name, start, end in windows:
        during = load.between(start, end)
        assert during, f"no request answered during the {name} outage"
        if name.startswith("database"):
            assert any(a.status == 503 for a in during), seen
        else:
            # The public catalog is read from PostgreSQL while Redis is away.
            assert all(a.status == 200 for a in during if a.what == "catalog"), seen

    # Each accepted order exists, once.
    async with resources.sessionmaker() as session:
        found = await session.scalar(
            text("SELECT count(*) FROM orders WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": load.orders},
        )
        doubled = await session.scalar(
            text(
                "SELECT count(*) FROM "
                "(SELECT 1 FROM orders GROUP BY quote_id HAVING count(*) > 1) AS doubled"
            )
        )
    assert len(set(load.orders)) == len(load.orders) == found
    assert doubled == 0
    assert load.labels, "no label was bought under the load"
    log_text = log_path.read_text()
    # Neither the API nor the worker process died: each reconnected by itself.
    assert "run.component_exited" not in log_text
    # Every error was answered in the app and logged once: none reached uvicorn, which would
    # log its traceback a second time and close the connection.
    assert "Exception in ASGI application" not in log_text
    print(seen)  # what the outages looked like to the sellers (-rP shows it)
