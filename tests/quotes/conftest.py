"""Quotes fixtures: a local CoinGecko/Hermes-shaped server, and settings pointing at it when a
test says so with @pytest.mark.feeds(price_feed=..., price_feed_secondary=..., ...)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refit.settings import Settings
from tests.quotes.feed_server import FeedServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "feeds(**settings): price feed settings for the test")


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    marker = request.node.get_closest_marker("feeds")
    if marker is None:
        return settings
    server: FeedServer = request.getfixturevalue("feed_server")
    return settings.model_copy(
        update={
            "coingecko_url": f"{server.url}/api/v3",
            "pyth_hermes_url": server.url,
            **marker.kwargs,
        }
    )
