"""A token signed out through one API process is refused by another within a second: the
other learns it from the revocation watch's pub/sub, not by asking Redis per request."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest

from refit.auth import revocations
from refit.auth.tokens import decode_access_token
from tests.processes import free_port as _free_port
from tests.processes import read_log as _read
from tests.processes import start_refit, stop_refit
from tests.processes import until as _until

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
async def test_a_revoked_token_is_refused_by_another_process_within_a_second(
    client, resources, settings, make_user, tmp_path
):
    seller = await make_user()
    jti = decode_access_token(settings, seller.token).jti
    port = _free_port()
    log_path = tmp_path / "api.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))}
    env.update(
        REFIT_ENV="test",
        REFIT_DATABASE_URL=settings.database_url,
        REFIT_REDIS_URL=settings.redis_url,
        REFIT_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        REFIT_DATA_DIR=str(tmp_path / "data"),
        REFIT_PORT=str(port),
        REFIT_PUBLIC_URL=settings.public_url,
        REFIT_LOG_FORMAT="json",
    )
    other = start_refit(["api"], env, log_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def watching() -> bool:
                return "auth.revocation_watch_live" in await _read(log_path)

            await _until("waiting for its revocation watch", watching, other, log_path, 180)
            assert (await http.get("/api/orders", headers=seller.headers)).status_code == 200

            signed_out = await client.post("/api/auth/sign-out", headers=seller.headers)
            assert signed_out.status_code == 204, signed_out.text
            deadline = time.monotonic() + 1.0
            # The record goes, so only the other process's own set can still refuse it: a
            # refusal below is the pub/sub path, not a per-request Redis check.
            await resources.redis.delete(revocations.revoked_key(settings, jti))
            while True:
                answer = await http.get("/api/orders", headers=seller.headers)
                if answer.status_code == 401:
                    assert answer.json()["code"] == "token_revoked"
                    break
                assert answer.status_code == 200, answer.text
                assert time.monotonic() < deadline, "still accepted a second after sign-out"
                await asyncio.sleep(0.02)
    finally:
        await stop_refit(other)
