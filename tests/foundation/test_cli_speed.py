"""`refit --help` answers at once because the command line imports only what building its tree
needs (refit.cli): a structural check of what it loads, not a timed assert. The domains'
commands are loaded when they run or show their own help, and still show all of it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from refit.cli import LAZY, cli, load_lazy
from tests.processes import ROOT

# Each of these costs from a tenth of a second to seconds to import; none is needed to list
# the commands. Rich is typer's fancy help: more than half a second on its own.
HEAVY = (
    "sqlalchemy",
    "psycopg",
    "alembic",
    "redis",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic_settings",
    "procrastinate",
    "reportlab",
    "solana",
    "boto3",
    "opentelemetry",
    "prometheus_client",
    "sentry_sdk",
    "rich",
    "refit.app",
    "refit.settings",
    "refit.serving",
    "refit.embedded",
)

LOADED = """
import json
import sys
{run}
heavy = {heavy!r}
prefixes = tuple(h + "." for h in heavy)
print(json.dumps(sorted({{m for m in sys.modules if m in heavy or m.startswith(prefixes)}})))
"""


def _loaded_after(run: str) -> tuple[list[str], str]:
    """The heavy modules loaded by `run` in a fresh interpreter, and what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED.format(run=run, heavy=HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    *printed, loaded = done.stdout.strip().splitlines()
    return json.loads(loaded), "\n".join(printed)


def test_importing_the_command_line_loads_nothing_heavy():
    loaded, _ = _loaded_after("import refit.cli")
    assert loaded == []


def test_refit_help_lists_every_command_without_loading_any():
    run = (
        "sys.argv = ['refit', '--help']\n"
        "from refit.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code in (0, None)"
    )
    loaded, printed = _loaded_after(run)
    assert loaded == []
    for name, (_, _, line) in LAZY.items():
        assert f"{name}  " in printed and line in printed, printed
    for name in ("run", "api", "worker", "ledger", "migrate", "worker-alive"):
        assert f"  {name} " in printed, printed


@pytest.mark.parametrize("name", sorted(LAZY))
def test_a_loaded_command_keeps_its_listed_line(name):
    assert load_lazy(name).get_short_help_str(limit=1000) == LAZY[name][2]


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["flags", "--help"], ["list", "set", "off", "Feature flags"]),
        (["flags", "set", "--help"], ["--percent", "--wallet", "--variant"]),
        (["operator", "create", "--help"], ["--role", "inspector|admin"]),
        (["payouts", "reconcile", "--help"], ["Exit status 1"]),
        (["import-localstorage", "--help"], ["--dry-run", "--batch-size", "Safe to run again"]),
        (["backup", "--help"], ["pg_dump", "safe while the service runs"]),
        (["restore", "--help"], ["EMPTY", "newest revision"]),
        (["catalog", "load", "--help"], ["catalog JSON file"]),
        (["sanctions", "load", "--help"], ["SDN.XML", "--allow-older", "never none"]),
    ],
)
def test_each_command_still_shows_its_whole_help(args, shown):
    result = CliRunner().invoke(cli, args, terminal_width=100)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for part in shown:
        assert part in text, result.output
