"""The HTTP clients we make share one TLS context per process (refit/tls.py): httpx loads the
CA bundle into a new one for every client otherwise, ~25 ms of CPU, twice per label job and per
seller's rates request with Shippo.

Checked on the contexts the clients' connection pools hold, for every client made in two
openings of the Shippo carrier, and on a real HTTPS call through them: the shared context
still checks the server's certificate (a self-signed one is refused, as before)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from refit import tls
from refit.carriers.interface import CarrierUnavailable
from refit.carriers.picker import open_carrier
from refit.carriers.shippo.client import ShippoCarrier
from refit.settings import Settings
from tests.security.tls_sites import self_signed, serve
from tests.shipping.test_shippo_contract import SELLER


@pytest.fixture
async def self_signed_https(tmp_path: Path) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TLS server on 127.0.0.1 with a certificate no CA signed, and the requests it read: it
    answers each as Shippo refuses a bad address (400), so a client that did not check the
    certificate would get that answer, not a failed connection."""
    refusal = b'{"detail": "Invalid address."}'
    async with serve(self_signed(tmp_path), status=400, body=refusal) as (url, seen):
        yield url, seen.requests


def _clients(carrier: Any) -> list[httpx.AsyncClient]:
    assert isinstance(carrier, ShippoCarrier)
    return [carrier._api, carrier._downloads]


async def test_every_shippo_client_shares_the_process_context(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, shippo_api_key="shippo_test_x")
    clients: list[httpx.AsyncClient] = []
    for _ in range(2):
        async with open_carrier(settings) as carrier:
            clients += _clients(carrier)
        async with open_carrier(settings, seller_waiting=True) as carrier:
            clients += _clients(carrier)
    pools = [client._transport._pool for client in clients]  # type: ignore[attr-defined]
    assert len(pools) == 8
    assert all(pool._ssl_context is tls.client_context() for pool in pools)
    # httpcore sets the shared context's ALPN per connection from the client's http2 flag:
    # every client given it must ask the same (refit/tls.py).
    assert not any(pool._http2 for pool in pools)
    assert tls.client_context().verify_mode is ssl.CERT_REQUIRED
    assert tls.client_context().check_hostname is True


async def test_the_shared_context_still_refuses_an_untrusted_certificate(
    tmp_path: Path, self_signed_https: tuple[str, list[bytes]]
) -> None:
    url, requests = self_signed_https
    settings = Settings(
        _env_file=None, data_dir=tmp_path, shippo_api_key="shippo_test_x", shippo_base_url=url
    )
    async with open_carrier(settings, seller_waiting=True) as carrier:
        with pytest.raises(CarrierUnavailable, match="ConnectError"):
            await carrier.validate_address(SELLER)
    assert requests == []  # the handshake failed: no request was ever sent


async def test_a_client_that_skips_the_check_would_have_been_answered(
    self_signed_https: tuple[str, list[bytes]],
) -> None:
    """The server above does answer: the refusal is the certificate check's."""
    url, requests = self_signed_https
    async with httpx.AsyncClient(verify=False) as client:
        response = await client.post(f"{url}/addresses", json={})
    assert response.status_code == 400
    assert len(requests) == 1
