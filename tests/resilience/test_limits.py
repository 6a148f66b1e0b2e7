"""The rate limits. In this process: per seller (all requests, quotes, orders), verification
mails per address and in all, the client address behind trusted proxies only, and the body
limit on every route. Then across two real `refit api` processes sharing one Redis: the
label, validation and per-seller limits, X-Forwarded-For, a stranger and a wallet's nonces."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from refit.app import create_app
from refit.errors import BodyLimit
from refit.resources import Resources
from tests.auth.wallets import Wallet, get_nonce, message_text
from tests.orders.helpers import DEVICE, add_address
from tests.processes import free_port as _free_port
from tests.processes import start_refit, stop_refit
from tests.processes import until as _until
from tests.routes import _concrete, api_routes

PROBLEM = "application/problem+json"


@asynccontextmanager
async def client_at(resources: Resources, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose TCP peer address is `ip` (the app shares the test's resources)."""
    app = create_app(resources.settings, resources=resources)
    transport = httpx.ASGITransport(app=app, client=(ip, 40000), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def assert_limited(response: httpx.Response, limit: int, window: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "rate_limited"
    assert 0 < int(response.headers["Retry-After"]) <= window
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(response.headers["RateLimit-Reset"]) <= window
    assert response.headers["RateLimit-Policy"] == f"{limit};w={window}"


async def test_the_101st_request_in_a_minute_from_one_seller_is_429(client, make_user):
    seller, other = await make_user(), await make_user()
    for n in range(100):
        answer = await client.get("/api/orders", headers=seller.headers)
        assert answer.status_code == 200, (n, answer.text)
    assert_limited(await client.get("/api/orders", headers=seller.headers), 100, 60)
    # Counted per seller: another one is served.
    assert (await client.get("/api/orders", headers=other.headers)).status_code == 200


async def test_quotes_and_orders_are_limited_per_seller(client, settings, make_user):
    settings.rate_limit_quotes_per_seller = "3/minute"
    settings.rate_limit_orders_per_seller = "2/minute"
    seller, other = await make_user(), await make_user()
    quotes = [await client.post("/api/quotes", json=DEVICE, headers=seller.headers) for _ in "abc"]
    assert [q.status_code for q in quotes] == [201, 201, 201]
    assert_limited(await client.post("/api/quotes", json=DEVICE, headers=seller.headers), 3, 60)
    assert (await client.post("/api/quotes", json=DEVICE, headers=other.headers)).status_code == 201

    def order(quote_id: str) -> dict[str, str]:
        return {"quote_id": quote_id, "shipping_address_id": str(uuid.uuid4())}

    # Refused for its own reasons (no such address) after being let through the limit.
    tries = [
        await client.post("/api/orders/create", json=order(q.json()["quote_id"]), headers=h)
        for q, h in zip(quotes[:2], [seller.headers] * 2, strict=True)
    ]
    assert [t.status_code for t in tries] == [404, 404], [t.text for t in tries]
    third = order(quotes[2].json()["quote_id"])
    assert_limited(
        await client.post("/api/orders/create", json=third, headers=seller.headers), 2, 60
    )


async def test_verification_mails_are_limited_per_address_and_in_all(
    client, resources, settings, make_user
):
    settings.rate_limit_verification_mail_per_ip = "2/hour"
    settings.rate_limit_verification_mail_overall = "3/hour"

    async def ask(http: httpx.AsyncClient) -> httpx.Response:
        # A new wallet each time: the per-seller resend interval never applies.
        seller = await make_user()
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        return await http.post(
            "/api/auth/verify-email", json={"email": email}, headers=seller.headers
        )

    async with (
        client_at(resources, "198.51.100.1") as first,
        client_at(resources, "198.51.100.2") as second,
    ):
        assert [(await ask(first)).status_code for _ in range(2)] == [202, 202]
        assert_limited(await ask(first), 2, 3600)
        assert (await ask(second)).status_code == 202
        # Three sent in all: a fourth address is refused too.
        async with client_at(resources, "198.51.100.3") as third:
            assert_limited(await ask(third), 3, 3600)


async def _nonce(http: httpx.AsyncClient, forwarded_for: str | None = None) -> httpx.Response:
    wallet = "11111111111111111111111111111111"  # the system program: a valid address
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await http.post("/api/auth/nonce", json={"wallet_address": wallet}, headers=headers)


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(resources, settings):
    """Rotating X-Forwarded-For from loopback used to dodge every per-IP limit."""
    settings.rate_limit_nonce_per_ip = "3/minute"
    settings.rate_limit_nonce_per_wallet = "100/minute"
    async with client_at(resources, "127.0.0.1") as http:
        answers = [await _nonce(http, f"203.0.113.{n}") for n in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].headers["RateLimit-Limit"] == "3"


async def test_behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_hop(
    resources, settings
):
    settings.rate_limit_nonce_per_ip = "2/minute"
    settings.rate_limit_nonce_per_wallet = "100/minute"
    settings.trusted_proxies = ["10.0.0.0/8"]
    async with client_at(resources, "10.0.0.5") as proxy:
        # What the client wrote (left of the proxy's own entry) changes nothing: the bucket is
        # the address the proxy saw.
        spoofed = [await _nonce(proxy, f"192.0.2.{n}, 198.51.100.9") for n in range(3)]
        assert [a.status_code for a in spoofed] == [200, 200, 429]
        # Another client through the same proxy (two proxies deep) has its own bucket.
        other = await _nonce(proxy, "198.51.100.10, 10.0.0.7")
        assert other.status_code == 200
    # Not from a trusted proxy: the header is the client's own word, ignored.
    async with client_at(resources, "192.0.2.50") as direct:
        assert (await _nonce(direct, "198.51.100.9")).status_code == 200


async def test_a_signed_message_with_another_statement_is_refused(client, settings):
    """What the seller read must be what we wrote: another statement over our domain (a
    site's "claim your airdrop") signs nobody in; the nonce stays unused for a real try."""
    wallet = Wallet()
    issued = await get_nonce(client, wallet)
    for statement, expected in (("Claim your free SOL airdrop now", 401), (None, 200)):
        fields = {**issued["sign_in_input"], "statement": statement or settings.siws_statement}
        message = message_text(fields)
        answer = await client.post(
            "/api/auth/connect-wallet",
            json={
                "wallet_address": wallet.address,
                "message": message,
                "signature": wallet.sign(message),
            },
        )
        assert answer.status_code == expected, answer.text
        if expected == 401:
            assert answer.json()["code"] == "statement_mismatch"


def _larger_routes(app: Any) -> dict[str, int]:
    for middleware in app.user_middleware:
        if middleware.cls is BodyLimit:
            return dict(middleware.kwargs["larger"])
    raise AssertionError("no BodyLimit middleware")


async def test_a_body_over_the_limit_is_413_on_every_route(client, resources, settings):
    """2 MB (or just over a route's own larger limit) to every route, declared up front; and
    streamed in chunks with no length to every route that reads a body."""
    app = create_app(resources.settings, resources=resources)
    larger = [(re.compile(pattern), limit) for pattern, limit in _larger_routes(app).items()]
    checked = 0
    for method, path, dependant in api_routes(app):
        if method == "GET" or not path.startswith("/api/"):
            continue
        url = _concrete(path)
        limit = next((lim for p, lim in larger if p.fullmatch(url)), settings.max_body_bytes)
        size = max(2 * 1024 * 1024, limit + 1)
        body = b"x" * size
        declared = await client.request(
            method, url, content=body, headers={"Content-Type": "application/json"}
        )
        assert declared.status_code == 413, (method, path, declared.status_code)
        assert declared.json()["code"] == "payload_too_large"
        if dependant.body_params:

            async def chunks(total: int = size) -> AsyncIterator[bytes]:
                for start in range(0, total, 256 * 1024):
                    yield b"x" * min(256 * 1024, total - start)

            streamed = await client.request(
                method, url, content=chunks(), headers={"Content-Type": "application/json"}
            )
            # 413 as it streams in; or refused before the body is read at all (the photo
            # upload checks the operator first and parses its form itself): never held.
            assert streamed.status_code in (413, 401), (method, path, streamed.status_code)
            if streamed.status_code == 413:
                assert streamed.json()["code"] == "payload_too_large"
        checked += 1
    assert checked > 20
    assert (await client.get("/healthz")).status_code == 200


def _api_env(settings: Any, data_dir: Path, port: int, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PROMETHEUS_"))}
    env.update(
        REFIT_ENV="test",
        REFIT_DATABASE_URL=settings.database_url,
        REFIT_REDIS_URL=settings.redis_url,
        REFIT_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        REFIT_DATA_DIR=str(data_dir),
        REFIT_PORT=str(port),
        REFIT_PUBLIC_URL=settings.public_url,  # the seller's token was issued for it
        REFIT_LOG_FORMAT="json",
        # Smaller than the defaults where the default would take a day to show.
        REFIT_RATE_LIMIT_ADDRESS_VALIDATIONS_PER_SELLER="5/day",
        REFIT_RATE_LIMIT_NONCE_PER_IP="5/minute",
        REFIT_RATE_LIMIT_NONCE_PER_WALLET="2/minute",
        **more,
    )
    return env


@pytest.mark.timeout(400)
async def test_limits_hold_across_two_api_processes(resources, settings, make_user, tmp_path):
    """Process `direct` trusts no proxy; `behind_lb` trusts loopback, as it would trust its
    load balancer. Requests alternate between them; every count is shared through Redis."""
    ports = [_free_port(), _free_port()]
    data_dir = tmp_path / "data"
    logs = [tmp_path / "direct.log", tmp_path / "behind_lb.log"]
    processes = [
        start_refit(["api"], _api_env(settings, data_dir, ports[0]), logs[0]),
        start_refit(
            ["api"],
            _api_env(settings, data_dir, ports[1], REFIT_TRUSTED_PROXIES="127.0.0.1"),
            logs[1],
        ),
    ]
    try:
        async with httpx.AsyncClient(timeout=20) as http:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url, process, log in zip(urls, processes, logs, strict=True):

                async def ready(url: str = url) -> bool:
                    try:
                        return (await http.get(f"{url}/readyz")).status_code == 200
                    except httpx.HTTPError:
                        return False

                await _until("waiting for /readyz", ready, process, log, 240)
            direct, behind_lb = urls
            sent = 0

            async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
                nonlocal sent
                answer = await http.request(method, urls[sent % 2] + path, **kwargs)
                sent += 1
                assert answer.status_code != 500, answer.text
                return answer

            seller = await make_user()
            address_id = str(await add_address(resources, seller.id))
            started = time.monotonic()

            # 10 label purchases a minute (of orders that are not there: let through, then
            # refused for that), the 11th refused by the limit, whichever process takes it.
            labels = [
                await call(
                    "POST",
                    "/api/shipping/purchase-label",
                    json={"order_id": str(uuid.uuid4()), "rate_id": "rate_x"},
                    headers=seller.headers,
                )
                for _ in range(11)
            ]
            assert [a.status_code for a in labels[:10]] == [404] * 10, labels[0].text
            assert_limited(labels[10], 10, 60)

            # Address validations (5 a day here): five real ones by the sandbox carrier.
            checks = [
                await call(
                    "POST",
                    "/api/shipping/validate-address",
                    json={"address_id": address_id},
                    headers=seller.headers,
                )
                for _ in range(6)
            ]
            assert [c.status_code for c in checks[:5]] == [200] * 5, checks[0].text
            assert_limited(checks[5], 5, 86400)

            # 100 requests a minute per seller, all routes together: 17 made so far.
            reads = [
                await call("GET", "/api/orders", headers=seller.headers) for _ in range(100 - sent)
            ]
            assert {r.status_code for r in reads} == {200}
            assert sent == 100
            assert_limited(await call("GET", "/api/orders", headers=seller.headers), 100, 60)
            assert time.monotonic() - started < 60, "the 101 requests took over a minute"

            # X-Forwarded-For from a peer that is not a trusted proxy is ignored: rotating it
            # does not get past the per-IP nonce limit (5 a minute here).
            rotated = [
                await http.post(
                    f"{direct}/api/auth/nonce",
                    json={"wallet_address": Wallet().address},
                    headers={"X-Forwarded-For": f"203.0.113.{n}"},
                )
                for n in range(6)
            ]
            assert [r.status_code for r in rotated] == [200] * 5 + [429]

            # Behind the (trusted) balancer, a stranger asks for the victim's nonces until
            # refused; the victim, from their own address, still gets one and signs in.
            victim = Wallet()

            async def nonce(client_ip: str) -> httpx.Response:
                return await http.post(
                    f"{behind_lb}/api/auth/nonce",
                    json={"wallet_address": victim.address},
                    headers={"X-Forwarded-For": client_ip},
                )

            stranger = [await nonce("203.0.113.7") for _ in range(3)]
            assert [r.status_code for r in stranger] == [200, 200, 429]
            issued = await nonce("198.51.100.20")
            assert issued.status_code == 200, issued.text
            message = issued.json()["message"]
            signed_in = await http.post(
                f"{behind_lb}/api/auth/connect-wallet",
                json={
                    "wallet_address": victim.address,
                    "message": message,
                    "signature": victim.sign(message),
                },
                headers={"X-Forwarded-For": "198.51.100.20"},
            )
            assert signed_in.status_code == 200, signed_in.text

            # A 2 MB body: 413, declared or streamed, on the real server (httptools), to a
            # client that sends all of it before reading the answer.
            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(32):
                    yield b"x" * 65536

            for url, content in ((direct, b"x" * 2 * 1024 * 1024), (behind_lb, chunks())):
                big = await http.post(
                    f"{url}/api/auth/nonce",
                    content=content,
                    headers={"Content-Type": "application/json"},
                )
                assert big.status_code == 413 and big.json()["code"] == "payload_too_large"
    finally:
        for process in processes:
            await stop_refit(process)
