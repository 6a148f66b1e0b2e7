"""What a process loads at start: the API (refit.app, its app built) and the worker (refit.queue
and the task modules it registers) leave out the libraries only some requests, jobs or
deployments need, each imported where it is used. A structural check of sys.modules in a fresh
interpreter, never a timed one.

Not listed because something the processes need imports it anyway: `opentelemetry.sdk`
(redis-py 8 imports `opentelemetry.sdk.metrics` when it is installed), `solana` itself (the
payouts code reads its commitment names, a module of enums; the client and its models are what
cost), `solders` and `nacl` (a few hundredths of a second; sign-in verifies with nacl)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from tests.processes import ROOT

# Each costs from a tenth of a second to a second of CPU at import.
DEFERRED = (
    "reportlab",  # the sandbox carrier drawing a label (refit.carriers.sandbox.label_pdf)
    "PIL",  # cleaning evidence photos (refit.inspection.evidence)
    "boto3",  # an S3 bucket for files (refit.storage)
    "botocore",
    "sentry_sdk",  # REFIT_SENTRY_DSN set (refit.error_reports)
    "opentelemetry.sdk.trace",  # REFIT_OTEL_EXPORTER_OTLP_ENDPOINT set (refit.tracing)
    "opentelemetry.exporter",
    "opentelemetry.instrumentation",
    "solana.rpc.async_api",  # a payout reaching the chain (refit.payouts)
    "solana.rpc.core",
    "httpx",  # Shippo, a live price feed, the sandbox's webhooks
    "jinja2",  # rendering an email or a dashboard page
)
# The worker serves no HTTP: it never loads the app, nor the dashboard's pages.
WORKER_ALSO_WITHOUT = ("refit.app", "refit.dashboard", "refit.openapi")

LOADED = """
import importlib.util
import json
import sys
{run}
watched = {watched!r}
prefixes = tuple(name + "." for name in watched)
print(json.dumps(sorted({{m for m in sys.modules if m in watched or m.startswith(prefixes)}})))
"""


def _loaded_after(run: str, watched: tuple[str, ...]) -> list[str]:
    """The `watched` modules (and their submodules) loaded by `run` in a fresh interpreter."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name
        not in (
            "REFIT_SENTRY_DSN",
            "REFIT_OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        )
    }
    done = subprocess.run(
        [sys.executable, "-c", LOADED.format(run=run, watched=watched)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_the_api_loads_none_of_the_deferred_libraries():
    # Imported and built (no lifespan: nothing connects): its routers, middleware, dashboard.
    run = (
        "from refit.app import create_app\n"
        "from refit.settings import Settings\n"
        "create_app(Settings(sentry_dsn=None, otel_exporter_otlp_endpoint=None))\n"
    )
    assert _loaded_after(run, DEFERRED) == []


def test_the_worker_loads_neither_the_app_nor_the_deferred_libraries():
    run = (
        "import importlib\n"
        "import refit.queue\n"
        "for module in refit.queue.TASK_MODULES:\n"
        "    importlib.import_module(module)\n"
        "assert 'refit.payouts.tasks' in sys.modules\n"
    )
    assert _loaded_after(run, DEFERRED + WORKER_ALSO_WITHOUT) == []


def test_every_watched_name_is_a_module_installed_here():
    # A misspelt or uninstalled name would be absent from any process: the checks above
    # would pass without checking anything.
    for name in DEFERRED + WORKER_ALSO_WITHOUT:
        assert importlib.util.find_spec(name) is not None, name
