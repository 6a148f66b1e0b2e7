"""The real thing: a seller's stream on a `refit api` process, the change made by a
`refit worker` process (the label job), delivered through PostgreSQL's NOTIFY within a
second of its commit; and SIGTERM ends open streams, so the API stops promptly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import httpx
import pytest

from tests.events.helpers import history_rows
from tests.events.sse import Comment, open_stream
from tests.orders.helpers import place_order
from tests.processes import free_port as _free_port
from tests.processes import read_log as _read
from tests.processes import start_refit, stop_refit
from tests.processes import until as _until


def _env(settings, data_dir, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))}
    env.update(
        REFIT_ENV="test",
        REFIT_DATABASE_URL=settings.database_url,
        REFIT_REDIS_URL=settings.redis_url,
        REFIT_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        REFIT_DATA_DIR=str(data_dir),
        REFIT_PUBLIC_URL=settings.public_url,  # the seller's token was issued for it
        REFIT_LOG_FORMAT="json",
        REFIT_WORKER_HEARTBEAT_SECONDS=str(settings.worker_heartbeat_seconds),
        **more,
    )
    return env


@pytest.mark.timeout(300)
async def test_a_change_by_the_worker_process_reaches_a_stream_on_the_api_process(
    resources, settings, make_user, tmp_path
):
    port = _free_port()
    data_dir = tmp_path / "data"
    api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
    api = start_refit(["api"], _env(settings, data_dir, REFIT_PORT=str(port)), api_log)
    worker = start_refit(["worker"], _env(settings, data_dir), worker_log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def listening() -> bool:
                return "events.listener_live" in await _read(api_log)

            await _until("waiting for the API's listener", listening, api, api_log, 180)
            seller = await make_user()
            order = await place_order(http, resources, seller)
            rates = await http.post(
                "/api/shipping/rates", json={"order_id": order["id"]}, headers=seller.headers
            )
            assert rates.status_code == 200, rates.text

            async with open_stream(http, order["id"], headers=seller.headers) as stream:
                assert (await stream.next_event()).status == "pending"
                bought = await http.post(
                    "/api/shipping/purchase-label",
                    json={"order_id": order["id"], "rate_id": rates.json()["rates"][0]["rate_id"]},
                    headers=seller.headers,
                )
                assert bought.status_code == 202, bought.text
                assert (await stream.next_event()).status == "processing_shipment"
                # The worker process buys the label (it may still be starting: generous).
                ready = await stream.next_event(timeout=120)
                assert ready.status == "awaiting_shipment"
                assert ready.json()["actor"] == "system"
                rows = await history_rows(resources, order["id"])
                assert ready.id == str(rows[-1].id) and rows[-1].actor.startswith("system:")
                lag = ready.received_at - rows[-1].created_at.timestamp()
                assert 0 <= lag < 1.0, f"arrived {lag:.3f} s after the worker's commit"

                # Stopping the API with the stream open: the stream ends, the process exits.
                stopping = time.monotonic()
                os.kill(api.pid, signal.SIGTERM)
                # Ends cleanly (a clean end, not a cut connection, is what the loop sees).
                while (item := await stream.next(timeout=15)) is not None:
                    assert isinstance(item, Comment), item  # heartbeats only
            assert await _until_exit(api) == 0
            assert time.monotonic() - stopping < 15
    finally:
        await stop_refit(worker)
        await stop_refit(api)


async def _until_exit(process) -> int:
    return await asyncio.to_thread(process.wait, 15)


@pytest.mark.timeout(300)
async def test_sigterm_ends_the_open_streams_of_each_api_process(
    resources, settings, make_user, tmp_path
):
    """`refit api --workers 2`: uvicorn's parent passes SIGTERM to each process, which waits for
    its open responses before it stops; each asks its streams to end first, so it stops."""
    port = _free_port()
    env = _env(settings, tmp_path / "data", REFIT_PORT=str(port))
    api_log = tmp_path / "api.log"
    api = start_refit(["api", "--workers", "2"], env, api_log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def both_started() -> bool:
                return (await _read(api_log)).count('"refit.api_process_started"') == 2

            await _until("waiting for both processes", both_started, api, api_log, 180)
            seller = await make_user()
            order = await place_order(http, resources, seller)
            async with contextlib.AsyncExitStack() as streams:
                # Each on its own connection: the kernel hands them to either process.
                opened = [
                    await streams.enter_async_context(
                        open_stream(http, order["id"], headers=seller.headers)
                    )
                    for _ in range(6)
                ]
                for stream in opened:
                    assert (await stream.next_event()).status == "pending"

                stopping = time.monotonic()
                os.kill(api.pid, signal.SIGTERM)
                for stream in opened:
                    while (item := await stream.next(timeout=15)) is not None:
                        assert isinstance(item, Comment), item  # heartbeats only
            assert await _until_exit(api) == 0
            assert time.monotonic() - stopping < 15
        assert (await _read(api_log)).count('"refit.api_process_stopped"') == 2
    finally:
        await stop_refit(api)
