"""The real `refit` command line speaking to a person: a server that does not answer is one line
saying what to do and exit status 3 (never a traceback, never a password); an empty flag list
says so; on a terminal, log lines are short and libraries say only warnings."""

from __future__ import annotations

import asyncio
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refit import cli_failures, startup
from tests.processes import ROOT, free_port

REFIT = str(Path(sys.executable).parent / "refit")
PASSWORD = "not-for-your-eyes"


def _env(settings, **overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REFIT_DATABASE_URL": settings.database_url,
        "REFIT_REDIS_URL": settings.redis_url,
        "REFIT_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "REFIT_DATA_DIR": str(settings.data_dir),
        **overrides,
    }


async def _refit(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`refit ARGS...` to its end (bounded): exit status, stdout, stderr."""
    done = await asyncio.to_thread(
        subprocess.run,
        [REFIT, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done.returncode, done.stdout, done.stderr


def _closed_port() -> int:
    return free_port()  # free now: nothing listens there


def test_the_exit_status_of_a_refused_start_is_the_command_lines():
    # 3, as uvicorn's STARTUP_FAILURE was: deploy scripts written for it keep working.
    assert startup.STARTUP_FAILURE == cli_failures.EXIT_CANNOT_RUN == 3


def test_a_bug_is_not_taken_for_an_outage():
    assert cli_failures.describe(ValueError("a bug")) is None
    try:
        raise RuntimeError("wrapped") from KeyError("inner")
    except RuntimeError as exc:
        assert cli_failures.describe(exc) is None


def test_a_providers_key_in_an_rpc_error_is_never_printed():
    """A provider answering 401 (or 429, 5xx): httpx's message repeats the URL, key and all."""
    import httpx2
    from solana.exceptions import SolanaRpcException

    url = "https://mainnet.rpc.example/?api-key=SECRET-KEY"
    request = httpx2.Request("POST", url)
    response = httpx2.Response(401, request=request)
    try:
        try:
            response.raise_for_status()
        except httpx2.HTTPStatusError as http_error:
            # As solana-py raises it (its message names the request's class: here a dict).
            raise SolanaRpcException(
                http_error, response.raise_for_status, None, {}
            ) from http_error
    except SolanaRpcException as exc:
        lines = cli_failures.describe(exc)
    assert lines is not None and len(lines) == 1, lines
    assert "SECRET-KEY" not in lines[0] and "api-key" not in lines[0]
    assert "HTTP 401" in lines[0]


@pytest.mark.parametrize("configured", [True, False])
async def test_reconcile_with_the_ledger_down_is_one_line(settings, configured):
    port = _closed_port()
    if configured:
        env = _env(settings, REFIT_SOLANA_RPC_URL=f"http://127.0.0.1:{port}/?api-key={PASSWORD}")
        todo = "check REFIT_SOLANA_RPC_URL"
    else:  # the local ledger `refit run` serves
        env = _env(settings, REFIT_LEDGER_HOST="127.0.0.1", REFIT_LEDGER_PORT=str(port))
        env.pop("REFIT_SOLANA_RPC_URL", None)
        todo = "start `refit run` (or `refit ledger`), or set REFIT_SOLANA_RPC_URL"
    code, out, err = await _refit(env, "payouts", "reconcile")
    assert code == 3, (out, err)
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"refit: the Solana ledger at http://127.0.0.1:{port} is not answering")
    assert line.endswith(f"): {todo}"), line
    assert PASSWORD not in line  # a provider's key rides in its URL


# Commands that reach the database, each through its own door: SQLAlchemy (flags, operator,
# catalog), alembic (migrate), procrastinate's pool (worker-alive), psycopg itself (backup).
DATABASE_COMMANDS = [
    ("flags", "list"),
    ("operator", "disable", "ada"),
    ("catalog", "load"),
    ("migrate",),
    ("worker-alive",),
    ("backup",),
]


@pytest.mark.parametrize("args", DATABASE_COMMANDS, ids=" ".join)
async def test_a_database_that_does_not_answer_is_one_line(servers, tmp_path, args):
    port = _closed_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REFIT_DATABASE_URL": f"postgresql://refit:{PASSWORD}@127.0.0.1:{port}/refit",
        "REFIT_REDIS_URL": servers.redis_url,
        "REFIT_DATA_DIR": str(tmp_path),
    }
    code, out, err = await _refit(env, *args)
    assert code == 3, (out, err)
    assert [line for line in err.splitlines() if line.startswith("refit: ")] == [
        f"refit: cannot connect to the database at postgresql://127.0.0.1:{port}/refit "
        f'(connection to server at "127.0.0.1", port {port} failed: Connection refused): '
        "check that PostgreSQL runs there and REFIT_DATABASE_URL names it"
    ], err
    assert "Traceback" not in err and PASSWORD not in out + err
    # worker-alive is a probe: it fails at once, not after its queue pool's half minute of
    # connection attempts (each of which psycopg_pool would log).
    assert "error connecting in" not in err


async def test_redis_that_does_not_answer_is_one_line(settings):
    port = _closed_port()
    env = _env(settings, REFIT_REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    code, out, err = await _refit(env, "catalog", "load")
    assert code == 3, (out, err)
    said = [line for line in err.splitlines() if line.startswith("refit: ")]
    assert len(said) == 1, err
    assert said[0].startswith(f"refit: Redis at redis://127.0.0.1:{port} is not answering (")
    assert said[0].endswith("): check that Redis runs there and REFIT_REDIS_URL names it")
    assert "Traceback" not in err and PASSWORD not in out + err


async def test_refused_settings_are_one_line_each(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REFIT_DATA_DIR": str(tmp_path)}
    env.update(REFIT_ENV="production", REFIT_JWT_SECRET=PASSWORD)
    code, out, err = await _refit(env, "flags", "list")
    assert code == 3, (out, err)
    assert err.splitlines() and all(line.startswith("refit: ") for line in err.splitlines())
    assert "refusing to start in production" in err and PASSWORD not in err


async def test_an_empty_flag_list_says_so(settings):
    code, out, err = await _refit(_env(settings), "flags", "list")
    assert code == 0, err
    assert out == ""  # a script reading the list finds it empty
    assert "no flags yet: `refit flags set NAME --on`" in err


def _on_a_terminal(env: dict[str, str], *args: str, timeout: float = 180) -> tuple[int, list[str]]:
    """`refit ARGS...` with a terminal for its input and output, as a person runs it: exit
    status and the lines it showed, colours taken out."""
    main, child = os.openpty()
    process = subprocess.Popen(
        [REFIT, *args], cwd=ROOT, env=env, stdin=child, stdout=child, stderr=child
    )
    os.close(child)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(main, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not data:
                break
            shown += data
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
    text = re.sub(r"\x1b\[[0-9;]*m", "", shown.decode())
    return code, [line for line in text.replace("\r\n", "\n").splitlines() if line.strip()]


async def test_on_a_terminal_lines_are_short_and_libraries_quiet(settings):
    env = _env(settings)
    env.pop("REFIT_LOG_FORMAT", None)
    # alembic says INFO twice on every run ("Context impl", "Will assume transactional DDL").
    code, lines = await asyncio.to_thread(_on_a_terminal, env, "migrate")
    assert code == 0, lines
    assert lines == ["migrated to head"]

    # Our own INFO line stays, short: level, event, fields; no JSON, no time, no module.
    code, lines = await asyncio.to_thread(_on_a_terminal, env, "catalog", "load")
    assert code == 0, lines
    assert lines[0].startswith("[info] catalog.loaded deactivated_grades=0 "), lines
    assert lines[1].startswith("catalog loaded: "), lines
    assert len(lines) == 2 and not any(line.startswith("{") for line in lines), lines
