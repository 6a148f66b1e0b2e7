"""Observability fixtures: the process's log as production writes it (JSON lines, captured),
a local OTLP receiver the service's traces are sent to, and /metrics read as numbers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from refit import tracing
from refit.logs import configure_logging
from refit.settings import Settings
from tests.observability.otlp_receiver import OTLPReceiver
from tests.shipping.conftest import make_order, shippo_server, shippo_settings  # noqa: F401

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_log() -> Iterator[Lines]:
    """Every log line of the process, JSON as in production; the set-up found is put back."""
    root = logging.getLogger()
    named = [logging.getLogger(name) for name in ("uvicorn.access", "procrastinate")]
    saved = (root.handlers[:], root.level, structlog.get_config())
    saved_named = [(log.handlers[:], log.level, log.propagate) for log in named]
    configure_logging(Settings(_env_file=None, env="test", log_format="json"))  # type: ignore[call-arg]
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    yield lines
    root.handlers[:], level, config = saved
    root.setLevel(level)
    structlog.configure(**config)
    for log, (handlers, level, propagate) in zip(named, saved_named, strict=True):
        log.handlers[:], log.propagate = handlers, propagate
        log.setLevel(level)


@pytest.fixture
def otlp(settings: Settings) -> Iterator[OTLPReceiver]:
    """A receiver on a loopback port, named in the settings as OTEL_EXPORTER_OTLP_ENDPOINT
    would (ask for it before `client`, so the app is built traced). Tracing is taken off the
    process afterwards."""
    receiver = OTLPReceiver().start()
    settings.otel_exporter_otlp_endpoint = receiver.url
    try:
        yield receiver
    finally:
        tracing.shutdown()
        receiver.stop()


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """/metrics as {(sample name, labels): value}."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)
