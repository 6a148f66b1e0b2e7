"""Done-when 2: fifty clicks on "pay" for one order, spread over two real `refit api`
processes at once (as behind a load balancer), make one payout row, one job and, once the
worker has run, one transfer on the chain."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from tests.payouts.conftest import (
    as_quoted_order,
    balance,
    count,
    payout_row,
    payouts_count,
    transfers_for,
)
from tests.processes import free_port as _free_port
from tests.processes import start_refit, stop_refit
from tests.processes import until as _until

LAMPORTS = 2_946_600_000  # $442 at $150
CLICKS = 50


def _api_env(settings, paying, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))}
    env.update(
        REFIT_ENV="test",
        REFIT_DATABASE_URL=settings.database_url,
        REFIT_REDIS_URL=settings.redis_url,
        REFIT_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        REFIT_DATA_DIR=str(settings.data_dir),
        REFIT_PUBLIC_URL=settings.public_url,
        REFIT_SOLANA_RPC_URL=paying.ledger.server.url,
        # The public key only: an API process never opens the keypair (the worker's alone).
        REFIT_TREASURY_PUBKEY=str(paying.treasury.pubkey()),
        REFIT_PORT=str(port),
    )
    return env


@pytest.mark.timeout(300)
async def test_fifty_clicks_over_two_api_processes_pay_once(
    client, resources, settings, make_user, run_jobs, paying, tmp_path
):
    order_id, wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    ports = [_free_port(), _free_port()]
    logs = [tmp_path / f"api-{n}.log" for n in (1, 2)]
    apis = [
        start_refit(["api"], _api_env(settings, paying, port), log)
        for port, log in zip(ports, logs, strict=True)
    ]
    try:
        https = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in ports]
        for http, api, log in zip(https, apis, logs, strict=True):

            async def ready(http: httpx.AsyncClient = http) -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await _until("waiting for refit api", ready, api, log, 180)

        # Every click its own Idempotency-Key, as a browser's separate clicks would be; the
        # one payout per order is the database's to guarantee, not the key's.
        clicks = [
            https[n % 2].post(
                f"/api/admin/orders/{order_id}/pay",
                headers={**paying.admin.headers, "Idempotency-Key": f"click-{n}"},
            )
            for n in range(CLICKS)
        ]
        answers = await asyncio.gather(*clicks)
        for http in https:
            await http.aclose()
    finally:
        for api in apis:
            await stop_refit(api)

    odd = [(a.status_code, a.text) for a in answers if a.status_code != 202]
    assert odd == []
    assert len({a.json()["id"] for a in answers}) == 1
    assert await payouts_count(resources) == 1
    jobs = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'payouts.send_payout'"
    assert await count(resources, jobs) == 1

    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    assert await transfers_for(paying.ledger, payout.reference) == [payout.signature]
    assert await balance(paying.ledger, wallet.pubkey()) == LAMPORTS
