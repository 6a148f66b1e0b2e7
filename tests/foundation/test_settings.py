"""Production refuses to start on default secrets or on the embedded servers."""

import pytest
from pydantic import ValidationError

from refit.settings import Settings


def test_production_refuses_defaults_and_embedded_servers():
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None, env="production")
    message = str(error.value)
    for name in (
        "REFIT_JWT_SECRET",
        "REFIT_SHIPPO_WEBHOOK_TOKEN",
        "REFIT_DATABASE_URL",
        "REFIT_REDIS_URL",
        "REFIT_SOLANA_RPC_URL",
        "REFIT_TREASURY_PUBKEY",
    ):
        assert name in message


def test_production_starts_with_real_settings():
    # No REFIT_ADMIN_PASSWORD: it is the embedded default's bootstrap password only;
    # production's operators are accounts (`refit operator create`).
    settings = Settings(
        _env_file=None,
        env="production",
        # Random-looking: production refuses short or repetitive secrets (issue 15).
        jwt_secret="9f2c4e7a1b8d3f6e0a5c9b2d7e4f1a8c3b6d9e2f5a0c7b4e1d8f3a6c9b2e5d7",
        shippo_webhook_token="c3e8a1f6b9d2e7c4a0f5b8d3e6a9c2f7b4d1e8a5",
        shippo_api_key="shippo_live_0123456789abcdef",
        shippo_webhook_hmac_secret="5b0e9d4c7a2f8e1b6d3c0a9f4e7b2d5c8a1f6e3b",
        smtp_url="smtps://refit:password@smtp.example:465",
        sentry_dsn="https://public@o1.ingest.sentry.example/1",
        database_url="postgresql://refit@db.example/refit",
        redis_url="redis://cache.example:6379/0",
        solana_rpc_url="https://rpc.example",
        treasury_pubkey="4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
    )
    assert settings.is_production


def test_a_mistyped_limit_is_refused_at_start_up_and_an_empty_one_is_off():
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None, rate_limit_seller_requests="lots")  # type: ignore[call-arg]
    assert "REFIT_RATE_LIMIT_SELLER_REQUESTS='lots' is not a limit" in str(error.value)
    off = Settings(_env_file=None, rate_limit_operator_login_per_username="")  # type: ignore[call-arg]
    assert off.rate_limit_operator_login_per_username == ""
