"""Production refuses to start on each unsafe setting, saying which and why; development and
tests start with no settings at all (the embedded default)."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from refit.settings import DEV_JWT_SECRET, DEV_WEBHOOK_TOKEN, Settings
from tests.processes import start_refit, stop_refit

SAFE: dict[str, Any] = {
    "env": "production",
    "jwt_secret": secrets.token_hex(32),
    "shippo_webhook_token": secrets.token_hex(24),
    "shippo_api_key": "shippo_live_" + secrets.token_hex(16),
    "shippo_webhook_hmac_secret": secrets.token_hex(24),
    "smtp_url": "smtps://refit:password@smtp.example:465",
    "sentry_dsn": "https://public@o1.ingest.sentry.example/1",
    "database_url": "postgresql://refit@db.example/refit",
    "redis_url": "redis://cache.example:6379/0",
    "solana_rpc_url": "https://rpc.example",
    "treasury_keypair": "/run/secrets/treasury.json",
    "treasury_pubkey": "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
}

UNSAFE = [
    ("shippo_api_key", None, "REFIT_SHIPPO_API_KEY must be set", "sandbox carrier"),
    ("smtp_url", None, "REFIT_SMTP_URL must be set", "outbox folder"),
    ("sentry_dsn", None, "REFIT_SENTRY_DSN must be set", "reach no one"),
    ("jwt_secret", DEV_JWT_SECRET, "REFIT_JWT_SECRET must be set", "default is public"),
    ("jwt_secret", "Zq8#rT1!vB6@", "REFIT_JWT_SECRET is too short", "12 characters, 32+"),
    ("jwt_secret", "x" * 64, "REFIT_JWT_SECRET is too predictable", "about 0 bits"),
    ("jwt_secret", "ab" * 32, "REFIT_JWT_SECRET is too predictable", "about 64 bits"),
    ("shippo_webhook_token", DEV_WEBHOOK_TOKEN, "REFIT_SHIPPO_WEBHOOK_TOKEN must be set", ""),
    ("shippo_webhook_token", "x", "REFIT_SHIPPO_WEBHOOK_TOKEN is too short", "1 characters"),
    ("shippo_webhook_token", "token" * 6, "REFIT_SHIPPO_WEBHOOK_TOKEN is too predictable", ""),
    ("shippo_webhook_hmac_secret", "secret", "REFIT_SHIPPO_WEBHOOK_HMAC_SECRET is too short", ""),
    ("database_url", None, "REFIT_DATABASE_URL must be set", "no embedded PostgreSQL"),
    ("redis_url", None, "REFIT_REDIS_URL must be set", "no embedded Redis"),
    ("solana_rpc_url", None, "REFIT_SOLANA_RPC_URL must be set", "no local ledger"),
    ("treasury_pubkey", None, "REFIT_TREASURY_PUBKEY must be set", "no generated treasury"),
]


def test_production_starts_with_safe_settings():
    assert Settings(_env_file=None, **SAFE).is_production  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value", "which", "why"), UNSAFE, ids=[f"{c[0]}={c[1]!r:.12}" for c in UNSAFE]
)
def test_production_refuses_each_unsafe_setting(field, value, which, why):
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **{**SAFE, field: value})  # type: ignore[call-arg]
    [error] = refused.value.errors()
    message = error["msg"]
    assert "refusing to start in production" in message
    assert which in message and why in message, message
    # That setting alone is named: the others were safe.
    assert message.count("REFIT_") == 1, message


@pytest.mark.parametrize("env", ["development", "test"])
def test_development_and_tests_start_with_no_settings(env):
    settings = Settings(_env_file=None, env=env)  # type: ignore[call-arg]
    assert settings.database_url is None and settings.redis_url is None  # the embedded ones


@pytest.mark.timeout(120)
async def test_refit_api_in_production_without_smtp_exits_saying_why(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))}
    env.update(
        {f"REFIT_{k.upper()}": str(v) for k, v in SAFE.items() if k != "smtp_url"},
        REFIT_DATA_DIR=str(tmp_path / "data"),
    )
    log_path = tmp_path / "api.log"
    process = start_refit(["api"], env, log_path)
    try:
        code = await asyncio.to_thread(process.wait, 90)
    except subprocess.TimeoutExpired:
        await stop_refit(process)
        raise AssertionError("refit api did not exit:\n" + log_path.read_text()[-3000:]) from None
    output = log_path.read_text()
    assert code == 3, output  # STARTUP_FAILURE: a failed deploy, not a clean stop
    assert "refusing to start in production: REFIT_SMTP_URL must be set" in output, output
    assert "no seller receives one" in output
    # The refusal names settings, never their values.
    assert SAFE["jwt_secret"] not in output and "Traceback" not in output
