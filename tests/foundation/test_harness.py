"""The harness itself: a 500 from the app fails the test that got it, even when the test
would have counted it as a refusal or swallowed the failure; a 503 is an answer like any."""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]
SUMMARY_LINE = re.compile(r"(?P<outcome>PASSED|FAILED|ERROR) test_probed\.py::(?P<test>\w+)")

PROBED = """
import asyncio

import pytest
from fastapi import FastAPI

from refit.errors import ServiceUnavailable, install_error_handlers

app = FastAPI()
install_error_handlers(app)


@app.get("/crash")
async def crash() -> None:
    raise RuntimeError("a bug")


@app.get("/down")
async def down() -> None:
    raise ServiceUnavailable("Redis is down", code="auth_unavailable")


async def test_a_crash_counted_as_a_refusal(open_client):
    async with open_client(app) as http:
        response = await http.get("/crash")
    assert response.status_code >= 400


async def test_a_crash_swallowed_by_gather(open_client):
    async with open_client(app) as http:
        await asyncio.gather(http.get("/crash"), return_exceptions=True)


@pytest.mark.allow_500
async def test_a_crash_provoked_on_purpose(open_client):
    async with open_client(app) as http:
        assert (await http.get("/crash")).status_code == 500


async def test_a_dependency_down(open_client):
    async with open_client(app) as http:
        assert (await http.get("/down")).status_code == 503
"""


def test_a_500_fails_the_test_unless_marked(pytester: pytest.Pytester):
    pytester.makeini(
        "[pytest]\n"
        "asyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = session\n"
        "asyncio_default_test_loop_scope = session\n"
    )
    pytester.makeconftest(
        "from tests.conftest import open_client, pytest_configure, pytest_runtest_makereport"
        "  # noqa: F401\n"
    )
    pytester.makepyfile(test_probed=PROBED)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rA")
    # The short summary's lines only: captured log lines also start with "ERROR " (whether
    # there are any depends on the logging set up by tests run earlier in the process).
    outcomes = {
        (found["outcome"], found["test"])
        for line in result.outlines
        if (found := SUMMARY_LINE.match(line))
    }
    assert outcomes == {
        ("FAILED", "test_a_crash_counted_as_a_refusal"),
        # It passed, having swallowed the failure: its teardown fails it all the same.
        ("PASSED", "test_a_crash_swallowed_by_gather"),
        ("ERROR", "test_a_crash_swallowed_by_gather"),
        ("PASSED", "test_a_crash_provoked_on_purpose"),
        ("PASSED", "test_a_dependency_down"),
    }, result.stdout.str()
    result.stdout.fnmatch_lines(["*GET /crash answered 500*internal_error*"])
