"""The treasury's secret only where it signs (issue 23, done-when 5): the API and the dashboard
know the treasury by REFIT_TREASURY_PUBKEY alone; the worker loads the keypair, refuses one
that is not that key's, reads the balance on a schedule and stores it for the pages and the
metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from solders.keypair import Keypair

from refit.ledger.treasury import load_treasury
from refit.models import OrderStatus
from refit.payouts.treasury_readings import latest_balance, read_treasury_balance
from tests.dashboard.helpers import signed_in_operator
from tests.payouts.conftest import (
    TREASURY_LAMPORTS,
    as_quoted_order,
    balance,
    order_row,
    pay,
    payout_row,
)
from tests.processes import ROOT, free_port, start_refit, stop_refit


def _worker_env(settings, paying, keypair_file: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))},
        "REFIT_ENV": "test",
        "REFIT_DATABASE_URL": settings.database_url,
        "REFIT_REDIS_URL": settings.redis_url,
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_DATA_DIR": str(settings.data_dir),
        "REFIT_PUBLIC_URL": settings.public_url,
        "REFIT_SOLANA_RPC_URL": paying.ledger.server.url,
        "REFIT_TREASURY_KEYPAIR": str(keypair_file),
        "REFIT_TREASURY_PUBKEY": str(paying.treasury.pubkey()),
    }


async def _finalized(resources, order_id: str, timeout: float = 90) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if (await payout_row(resources, order_id)).status == "finalized":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the payout of {order_id} did not reach finalized")


@pytest.mark.timeout(240)
async def test_without_the_keypair_the_api_and_dashboard_work_and_the_worker_pays(
    client, resources, settings, make_user, paying, tmp_path
):
    # The worker's keypair file; the API's settings name one that is not there (a container
    # the secret is not mounted in): any read of it by the API would fail the request.
    keypair_file = tmp_path / "worker-secrets" / "treasury.json"
    keypair_file.parent.mkdir()
    keypair_file.write_text(json.dumps(list(bytes(paying.treasury))))
    keypair_file.chmod(0o600)
    settings.treasury_keypair = SecretStr(str(tmp_path / "not-mounted" / "treasury.json"))
    with pytest.raises(ValueError):
        load_treasury(settings)

    by_api, api_wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    by_dashboard, dashboard_wallet, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, by_api, paying.admin)).status_code == 202
    _, csrf = await signed_in_operator(resources, client, "admin")
    asked = await client.post(f"/admin/orders/{by_dashboard}/pay", data={"csrf": csrf})
    assert asked.status_code == 303, asked.text
    for order_id in (by_api, by_dashboard):
        assert (await payout_row(resources, order_id)).treasury == str(paying.treasury.pubkey())

    pages = [
        "/admin/",
        f"/admin/orders/{by_api}",
        f"/admin/orders/{by_dashboard}",
        "/admin/payouts",
        "/admin/numbers",
        "/admin/operators",
        "/admin/outbox",
    ]
    for path in pages:
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text[:500])

    worker = start_refit(
        ["worker"], _worker_env(settings, paying, keypair_file), tmp_path / "worker.log"
    )
    try:
        for order_id in (by_api, by_dashboard):
            await _finalized(resources, order_id)
    finally:
        await stop_refit(worker)
    for order_id, wallet in ((by_api, api_wallet), (by_dashboard, dashboard_wallet)):
        payout = await payout_row(resources, order_id)
        assert await balance(paying.ledger, wallet.pubkey()) == payout.lamports
        assert (await order_row(resources, order_id)).status == OrderStatus.COMPLETED
    for path in pages:
        assert (await client.get(path)).status_code == 200, path


@pytest.mark.timeout(120)
def test_the_worker_refuses_a_keypair_that_is_not_the_public_keys(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))}
    other, secret = Keypair(), json.dumps(list(bytes(Keypair())))
    env.update(
        REFIT_ENV="test",
        REFIT_DATA_DIR=str(tmp_path),
        REFIT_TREASURY_KEYPAIR=secret,
        REFIT_TREASURY_PUBKEY=str(other.pubkey()),
        PYTHONPATH=str(ROOT),
    )
    refused = subprocess.run(
        [str(Path(sys.executable).parent / "refit"), "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert refused.returncode == 3, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.startswith("refit:")]
    assert len(lines) == 1 and f"REFIT_TREASURY_PUBKEY={other.pubkey()}" in lines[0], refused.stderr
    assert "Traceback" not in refused.stderr and secret not in refused.stderr


def _gauges(exposition: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith(("refit_treasury_", "refit_payouts_daily_"))
    }


async def test_the_balance_is_read_by_the_worker_and_shown_from_the_table(
    client, resources, make_user, run_jobs, paying
):
    before = _gauges((await client.get("/metrics")).text)
    assert before["refit_treasury_balance_lamports"] != before["refit_treasury_balance_lamports"]
    assert before["refit_payouts_daily_average_lamports"] == 0

    order_id, _, _ = await as_quoted_order(client, resources, make_user, paying)
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()
    paid = await payout_row(resources, order_id)
    assert paid.status == "finalized" and paid.lamports

    held = await read_treasury_balance()
    assert held == await balance(paying.ledger, paying.treasury.pubkey()) < TREASURY_LAMPORTS
    await signed_in_operator(resources, client, "admin")
    page = (await client.get("/admin/payouts")).text
    shown = re.search(r'id="treasury-balance">([0-9.]+) SOL<', page)
    assert shown and shown.group(1) == f"{held / 10**9:.4f}"

    after = _gauges((await client.get("/metrics")).text)
    assert after["refit_treasury_balance_lamports"] == held
    assert after["refit_payouts_daily_average_lamports"] == pytest.approx(paid.lamports / 7)


async def test_a_ledger_that_does_not_answer_keeps_the_last_reading(resources, settings):
    """The balance read with the RPC down: a warning and nothing stored, not a failed job
    every minute; the newest reading (and its time) stays what the pages show."""
    settings.treasury_pubkey = str(Keypair().pubkey())
    settings.solana_rpc_url = f"http://127.0.0.1:{free_port()}"
    assert await read_treasury_balance() is None
    async with resources.sessionmaker() as session:
        assert await latest_balance(session) is None
