"""Issue 15, done-when 1: schemathesis against the live OpenAPI document of a real `refit api`
process, as a signed-in seller: no 5xx, and no answer outside the documented schema (status
codes, content types, headers and bodies). Bounded: a few examples per operation."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from refit import db
from refit.auth.tokens import issue_access_token
from refit.settings import Settings
from tests.conftest import _admin_execute, with_database
from tests.processes import free_port as _free_port
from tests.processes import start_refit, stop_refit
from tests.processes import until as _until

EXAMPLES = int(os.environ.get("REFIT_SCHEMATHESIS_EXAMPLES", "8"))
# Signing out would revoke the token every later example signs in with; the event stream
# stays open by design. Both are covered by their own tests.
SKIPPED = {"auth-sign_out", "orders-order_events"}
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]


@dataclass
class LiveApi:
    url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
async def live_api(admin_url, template_db, servers, tmp_path_factory) -> AsyncIterator[LiveApi]:
    name = f"refit_st_{uuid.uuid4().hex[:10]}"
    await _admin_execute(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    database_url = with_database(admin_url, name)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tmp_path_factory.mktemp("schemathesis")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))}
    env.update(
        REFIT_ENV="test",
        REFIT_DATABASE_URL=database_url,
        REFIT_REDIS_URL=servers.redis_url,
        REFIT_REDIS_KEY_PREFIX=f"test:{uuid.uuid4().hex[:8]}:",
        REFIT_DATA_DIR=str(data_dir),
        REFIT_PUBLIC_URL=url,
        REFIT_PORT=str(port),
        # Thousands of requests from one seller: the limits have their own tests; here they
        # would turn most answers into 429s and leave the endpoints behind them untried.
        REFIT_RATE_LIMIT_SELLER_REQUESTS="1000000/minute",
        REFIT_RATE_LIMIT_QUOTES_PER_SELLER="1000000/minute",
        REFIT_RATE_LIMIT_ORDERS_PER_SELLER="1000000/minute",
        REFIT_RATE_LIMIT_LABEL_PURCHASES_PER_SELLER="1000000/minute",
        REFIT_RATE_LIMIT_ADDRESS_VALIDATIONS_PER_SELLER="1000000/minute",
    )
    log = data_dir / "api.log"
    api = start_refit(["api"], env, log)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:

            async def ready() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await _until("waiting for refit api", ready, api, log, 180)
        async with await psycopg.AsyncConnection.connect(db.libpq_url(database_url)) as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO users (wallet_address) VALUES (%s) RETURNING id",
                    (f"schemathesis{uuid.uuid4().hex}",),
                )
            ).fetchone()
            await conn.commit()
        assert row is not None
        token = issue_access_token(Settings(_env_file=None, env="test", public_url=url), row[0])  # type: ignore[call-arg]
        yield LiveApi(url, {"Authorization": f"Bearer {token.token}"})
    finally:
        await stop_refit(api)
        await _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.timeout(900)
async def test_the_live_api_keeps_its_documented_contract(live_api: LiveApi, tmp_path):
    """The schemathesis command itself (its pytest plugin does not run on pytest 9): it exits
    non-zero on any failed check and prints each failing request with a curl line."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{live_api.url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "20261125",
        "--generation-deterministic",
        "--request-timeout",
        "15",
        "--header",
        f"Authorization: {live_api.headers['Authorization']}",
        *[arg for skipped in SKIPPED for arg in ("--exclude-operation-id", skipped)],
    ]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=840, cwd=tmp_path
    )
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
