"""The HTTP server's options (refit/http_server.py), as the single process and each of
`refit api --workers N`'s processes get them."""

from __future__ import annotations

import logging

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from refit import bounded_head, http_server
from refit.settings import Settings


def test_what_the_server_tells_and_believes_of_a_client():
    config = http_server.config(Settings(), "refit.http_server:load_app", factory=True)
    # No `server: uvicorn` in the answers; X-Forwarded-For is refit.ratelimit's to believe.
    assert config.server_header is False
    assert config.proxy_headers is False
    assert (config.lifespan, config.ws) == ("on", "none")
    # httptools, with each request's head bounded (tests/security/test_attack_uvicorn.py).
    assert config.http is bounded_head.BoundedHeadProtocol
    assert issubclass(config.http, HttpToolsProtocol)
    # An idle connection outlives a load balancer's idle timeout (AWS's ALB: 60 s).
    assert config.timeout_keep_alive > 60


@pytest.mark.parametrize(
    ("setting", "level"),
    [
        ("INFO", logging.INFO),
        ("warn", logging.WARNING),
        ("WARNING", logging.WARNING),
        ("debug", logging.DEBUG),
        ("nonsense", logging.INFO),
    ],
)
def test_any_log_level_our_settings_take_starts_the_server(setting, level):
    # uvicorn knows five names; "WARN" (logging's alias) would stop every process at start.
    assert http_server.config(Settings(log_level=setting), "x:y").log_level == level
