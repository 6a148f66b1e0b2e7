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
        "REFIT_TREASURY_KEYPAIR",
    ):
        assert name in message


def test_production_starts_with_real_settings():
    # No REFIT_ADMIN_PASSWORD: it is the embedded default's bootstrap password only;
    # production's operators are accounts (`refit operator create`).
    settings = Settings(
        _env_file=None,
        env="production",
        jwt_secret="x" * 40,
        shippo_webhook_token="a-random-webhook-token",
        database_url="postgresql://refit@db.example/refit",
        redis_url="redis://cache.example:6379/0",
        solana_rpc_url="https://rpc.example",
        treasury_keypair="/run/secrets/treasury.json",
    )
    assert settings.is_production
