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
        "REFIT_ADMIN_PASSWORD",
        "REFIT_SHIPPO_WEBHOOK_TOKEN",
        "REFIT_DATABASE_URL",
        "REFIT_REDIS_URL",
    ):
        assert name in message


def test_production_starts_with_real_settings():
    settings = Settings(
        _env_file=None,
        env="production",
        jwt_secret="x" * 40,
        admin_password="a-long-operator-password",
        shippo_webhook_token="a-random-webhook-token",
        database_url="postgresql://refit@db.example/refit",
        redis_url="redis://cache.example:6379/0",
    )
    assert settings.is_production


def test_production_refuses_a_short_operator_password():
    with pytest.raises(ValidationError, match="REFIT_ADMIN_PASSWORD"):
        Settings(
            _env_file=None,
            env="production",
            jwt_secret="x" * 40,
            admin_password="",
            shippo_webhook_token="a-random-webhook-token",
            database_url="postgresql://refit@db.example/refit",
            redis_url="redis://cache.example:6379/0",
        )
