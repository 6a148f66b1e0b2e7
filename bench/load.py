"""The load generators and what they report: wrk (closed loop), pgbench, and the open-loop
generator in bench/openloop.py. Each runs as its own process, bounded in time, against
127.0.0.1 only, and comes back as one `Measure`."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# wrk: 2 threads, 32 connections, as the reference numbers were taken.
THREADS = 2
CONNECTIONS = 32
# A response slower than this is still counted (wrk's default, 2 s, drops it as a timeout).
TIMEOUT = "10s"
# How long a generator may overrun its own duration before it is killed.
GRACE_SECONDS = 30


@dataclass
class Measure:
    # None where the scenario is not a rate (the streams' row).
    requests_per_second: float | None
    p50_ms: float | None
    p99_ms: float | None
    # Answers that were not the success the scenario expects, plus transport errors.
    non_2xx: int
    extra: dict[str, object] = field(default_factory=dict)
    # CPU time the server's own processes spent per request (API, peer or worker).
    cpu_ms: float | None = None
    # Requests (or jobs) completed in the run: what cpu_ms is divided by.
    completed: int = 0


async def run_process(args: list[str], seconds: float, cwd: Path | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        # Its own process group: Ctrl-C reaches the bench, which then stops it by id.
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), seconds + GRACE_SECONDS)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {process.returncode}:\n{text[-2000:]}")
    return text


def ensure_wrk() -> str:
    """wrk's path, installed with apt-get where it is missing (the bench runs as root in CI)."""
    found = shutil.which("wrk")
    if found:
        return found
    import subprocess

    print("bench: installing wrk with apt-get", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is missing: apt-get install wrk")
    return found


def find_pgbench() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    raise RuntimeError("pgbench is missing: apt-get install postgresql-client")


async def wrk(
    url: str,
    *,
    seconds: float,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    script_args: list[str] | None = None,
) -> Measure:
    args = [
        ensure_wrk(),
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds:g}s",
        f"--timeout={TIMEOUT}",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    if script is not None:
        args += ["-s", str(script)]
    args.append(url)
    if script_args:
        args += ["--", *script_args]
    return parse_wrk(await run_process(args, seconds))


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(text: str) -> Measure:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    completed = re.search(r"(\d+) requests in", text)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = sum(int(n) for n in socket.groups()) if socket else 0
    measure = Measure(
        requests_per_second=rps,
        p50_ms=_ms(p50.group(1)) if p50 else None,
        p99_ms=_ms(p99.group(1)) if p99 else None,
        non_2xx=(int(non_2xx.group(1)) if non_2xx else 0) + errors,
        extra={"socket_errors": errors},
        completed=int(completed.group(1)) if completed else 0,
    )
    # The create script's own tally of statuses (bench/create_order.lua).
    tally = re.search(r"STATUS (.*)", text)
    if tally:
        counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", tally.group(1))}
        measure.extra.update(counts)
        measure.non_2xx = sum(v for k, v in counts.items() if k != "created") + errors
    return measure


async def pgbench(conninfo: str, script: str, *, seconds: float, workdir: Path) -> Measure:
    """`script` run by 32 clients for `seconds`, simple protocol (the compound `\\;` form
    needs it); latency percentiles from pgbench's per-transaction log."""
    _fresh_workdir(workdir, script)
    args = [
        find_pgbench(),
        "-n",  # no vacuum of pgbench's own tables: there are none
        "-M",
        "simple",
        f"-c{CONNECTIONS}",
        f"-j{THREADS}",
        f"-T{max(1, round(seconds))}",
        "-f",
        "script.sql",
        "-l",
        "--log-prefix=pgbench_log",
        conninfo,
    ]
    text = await run_process(args, seconds, cwd=workdir)
    tps = float(re.search(r"tps = ([\d.]+)", text).group(1))  # type: ignore[union-attr]
    failed = re.search(r"number of failed transactions: (\d+)", text)
    p50, p99 = _percentiles(_logged_latencies(workdir))
    return Measure(tps, p50, p99, int(failed.group(1)) if failed else 0)


def _fresh_workdir(workdir: Path, script: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("pgbench_log*"):
        old.unlink()
    (workdir / "script.sql").write_text(script)


def _logged_latencies(workdir: Path) -> list[float]:
    """Milliseconds per transaction: the third field of each line of pgbench's -l logs
    (failed transactions log a word there and are left out)."""
    latencies = []
    for log in workdir.glob("pgbench_log*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append(int(fields[2]) / 1000)
    return latencies


def _percentiles(values: list[float]) -> tuple[float | None, float | None]:
    if len(values) < 2:
        return None, None
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


async def open_loop(
    url: str, *, rate: float, seconds: float, headers: dict[str, str] | None = None
) -> Measure:
    args = [sys.executable, "-m", "bench.openloop", url, f"{rate:g}", f"{seconds:g}"]
    args += [f"{name}: {value}" for name, value in (headers or {}).items()]
    # Run from the repository, where `bench` is importable.
    result = json.loads((await run_process(args, seconds, cwd=ROOT)).strip().splitlines()[-1])
    return Measure(
        requests_per_second=result.pop("requests_per_second"),
        p50_ms=result.pop("p50_ms"),
        p99_ms=result.pop("p99_ms"),
        non_2xx=result.pop("non_2xx") + result["errors"],
        extra=result,
        completed=int(result["answered"]),
    )
