"""The treasury keypair: the Solana CLI's file format, owner-only, or REFIT_TREASURY_KEYPAIR;
production insists on a real one and a real cluster."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError
from solders.keypair import Keypair

from refit.ledger.treasury import load_or_create_keypair, load_treasury
from refit.settings import Settings


def test_a_generated_keypair_is_a_cli_keypair_file_readable_by_its_owner_only(tmp_path: Path):
    path = tmp_path / "keys" / "treasury.json"

    created = load_or_create_keypair(path)

    numbers = json.loads(path.read_text())
    assert len(numbers) == 64 and all(0 <= n < 256 for n in numbers)
    assert Keypair.from_bytes(bytes(numbers)) == created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_keypair(path) == created
    assert list(tmp_path.joinpath("keys").iterdir()) == [path]


def test_the_setting_is_a_path_or_the_json_array_itself(tmp_path: Path):
    keypair = Keypair()
    text = json.dumps(list(bytes(keypair)))
    (tmp_path / "k.json").write_text(text)

    for value in (text, str(tmp_path / "k.json")):
        settings = Settings(_env_file=None, data_dir=tmp_path, treasury_keypair=value)
        assert load_treasury(settings) == keypair
        assert text not in repr(settings)
    assert not (tmp_path / "treasury.json").exists()


def test_a_bad_setting_says_so_without_quoting_it(tmp_path: Path):
    settings = Settings(_env_file=None, data_dir=tmp_path, treasury_keypair="[1, 2, 3]")
    with pytest.raises(ValueError) as error:
        load_treasury(settings)
    assert "1, 2, 3" not in str(error.value)


def test_development_generates_one_under_the_data_dir(tmp_path: Path):
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert load_treasury(settings) == load_treasury(settings)
    assert (tmp_path / "treasury.json").exists()
    assert settings.solana_rpc_endpoint == "http://127.0.0.1:8899"


def test_production_needs_a_cluster_and_a_treasury():
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None, env="production")
    assert "REFIT_SOLANA_RPC_URL" in str(error.value)
    assert "REFIT_TREASURY_PUBKEY" in str(error.value)
    settings = Settings(
        _env_file=None,
        env="production",
        # Random-looking, and every service production requires (issue 15's refusals).
        jwt_secret="9f2c4e7a1b8d3f6e0a5c9b2d7e4f1a8c3b6d9e2f5a0c7b4e1d8f3a6c9b2e5d7",
        shippo_webhook_token="c3e8a1f6b9d2e7c4a0f5b8d3e6a9c2f7b4d1e8a5",
        shippo_api_key="shippo_live_0123456789abcdef",
        shippo_webhook_hmac_secret="5b0e9d4c7a2f8e1b6d3c0a9f4e7b2d5c8a1f6e3b",
        smtp_url="smtps://refit:password@smtp.example:465",
        sentry_dsn="https://public@o1.ingest.sentry.example/1",
        database_url="postgresql://refit@db.example/refit",
        redis_url="redis://cache.example:6379/0",
        solana_rpc_url="https://api.mainnet-beta.solana.com",
        treasury_pubkey="4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
    )
    assert settings.solana_rpc_endpoint == "https://api.mainnet-beta.solana.com"
