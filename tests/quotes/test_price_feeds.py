"""SOL/USD price feeds against local servers speaking CoinGecko's and Hermes' JSON: exact
decimals, API keys sent, short cache, and a stale, doubtful or diverging rate refused (503)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from refit.models import Quote
from tests.orders.helpers import DEVICE


async def _quote(client, make_user):
    seller = await make_user()
    return await client.post("/api/quotes", json=DEVICE, headers=seller.headers)


async def _quote_count(resources) -> int:
    async with resources.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(Quote))


async def test_fixed_rate_is_the_default(client, make_user):
    response = await _quote(client, make_user)
    assert response.status_code == 201
    body = response.json()
    assert body["rate_source"] == "fixed"
    assert body["sol_usd_rate"] == "150.00000000"


@pytest.mark.feeds(price_feed="coingecko", coingecko_api_key="CG-demo-key")
async def test_coingecko_rate_exact_and_key_sent(client, make_user, feed_server):
    feed_server.state.coingecko_usd = "187.4321"
    response = await _quote(client, make_user)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["rate_source"] == "coingecko"
    assert body["sol_usd_rate"] == "187.43210000"
    # 442.00 / 187.4321 = 2.35817... rounded down to 4 places.
    assert body["price_usd"] == "442.00"
    assert body["price_sol"] == "2.3581"
    assert body["price_lamports"] == 2_358_100_000
    _, query, headers = feed_server.state.requests[0]
    assert query["include_last_updated_at"] == ["true"]
    assert headers.get("x-cg-demo-api-key") == "CG-demo-key"


@pytest.mark.feeds(price_feed="pyth", pyth_api_key="pyth-key")
async def test_pyth_rate_from_mantissa_and_exponent(client, make_user, feed_server):
    feed_server.state.pyth_price = "18743210000"  # x 10^-8 = 187.4321
    response = await _quote(client, make_user)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["rate_source"] == "pyth"
    assert Decimal(body["sol_usd_rate"]) == Decimal("187.4321")
    _, query, headers = feed_server.state.requests[0]
    assert query["ids[]"] == [
        "0x" + "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d"
    ]
    assert headers.get("Authorization") == "Bearer pyth-key"


@pytest.mark.feeds(price_feed="coingecko")
async def test_rate_cached_between_quotes(client, make_user, feed_server):
    for _ in range(3):
        assert (await _quote(client, make_user)).status_code == 201
    assert feed_server.state.hits("/simple/price") == 1


def _case(feed: str, script: dict[str, object], reason: str) -> object:
    return pytest.param(script, reason, marks=pytest.mark.feeds(price_feed=feed), id=reason)


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        _case("coingecko", {"coingecko_age_seconds": 120}, "120 s old"),
        _case("coingecko", {"coingecko_status": 429}, "HTTP 429"),
        _case("coingecko", {"coingecko_usd": "0"}, "not positive"),
        _case("pyth", {"pyth_age_seconds": 90}, "90 s old"),
        _case("pyth", {"pyth_status": 401}, "HTTP 401"),
        # conf 2% of the price: Pyth is not sure enough.
        _case("pyth", {"pyth_conf": "374864200"}, "confidence"),
    ],
)
async def test_unusable_rate_is_503_and_nothing_quoted(
    script, reason, feed_server, resources, client, make_user
):
    for name, value in script.items():
        setattr(feed_server.state, name, value)
    response = await _quote(client, make_user)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "price_unavailable"
    assert reason in problem["detail"]
    assert response.headers["Retry-After"] == "10"
    assert await _quote_count(resources) == 0


@pytest.mark.feeds(price_feed="coingecko", price_feed_secondary="pyth")
async def test_two_sources_that_agree(client, make_user, feed_server):
    feed_server.state.coingecko_usd = "187.43"
    feed_server.state.pyth_price = "18900000000"  # 189.00: 0.84% apart, under 2%
    response = await _quote(client, make_user)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["rate_source"] == "coingecko,checked:pyth"
    assert body["sol_usd_rate"] == "187.43000000"  # the primary's price, as recorded
    assert feed_server.state.hits("/simple/price") == 1
    assert feed_server.state.hits("/v2/updates/price/latest") == 1


@pytest.mark.feeds(price_feed="coingecko", price_feed_secondary="pyth")
async def test_two_sources_that_diverge_is_503(client, make_user, feed_server, resources):
    feed_server.state.coingecko_usd = "187.43"
    feed_server.state.pyth_price = "19500000000"  # 195.00: 4.04% apart
    response = await _quote(client, make_user)
    assert response.status_code == 503
    assert response.json()["code"] == "price_unavailable"
    assert "disagree" in response.json()["detail"]
    assert await _quote_count(resources) == 0


@pytest.mark.feeds(price_feed="pyth", price_feed_secondary="coingecko")
async def test_secondary_stale_is_503(client, make_user, feed_server):
    feed_server.state.coingecko_age_seconds = 600
    response = await _quote(client, make_user)
    assert response.status_code == 503
    assert "coingecko price is 600 s old" in response.json()["detail"]
