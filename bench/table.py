"""The one table `make bench` prints, and the ratios the issue's targets are stated in.
Printed, never asserted: a shared 2-core machine moves absolute numbers from run to run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.load import Measure

# (key, label) in the order they are printed.
SCENARIOS = (
    ("pgbench_5", "pgbench: BEGIN/role/claims/SELECT/COMMIT, 5 round trips"),
    ("pgbench_1", "pgbench: the same 5 statements in 1 round trip"),
    ("node_read", "Node peer: GET /api/orders/{id}"),
    ("read", "ReFit: GET /api/orders/{id}"),
    ("node_read_rate", "Node peer: GET /api/orders/{id}, open loop at {rate}/s"),
    ("read_rate", "ReFit: GET /api/orders/{id}, open loop at {rate}/s"),
    ("list", "ReFit: GET /api/orders?limit=50"),
    ("create", "ReFit: POST /api/orders/create"),
    ("webhooks", "ReFit: POST /api/webhooks/shippo, signed (accepted/s)"),
    ("labels", "ReFit: label jobs/s, 1 worker x {concurrency}"),
    ("streams", "ReFit: a change to 1,000 SSE streams, 1 process (ms)"),
)


@dataclass
class Row:
    orders: int
    measure: Measure


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _label(key: str, label: str, rate: float, concurrency: int) -> str:
    return label.replace("{rate}", f"{rate:g}").replace("{concurrency}", str(concurrency))


def render(
    results: dict[str, dict[int, Row]], sizes: list[int], *, rate: float, concurrency: int
) -> list[str]:
    lines = [
        f"{'scenario':<60} {'orders':>10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'non-2xx':>8} {'CPU ms':>7}",
        "-" * 116,
    ]
    for size in sizes:
        for key, label in SCENARIOS:
            row = results.get(key, {}).get(size)
            if row is None:
                continue
            m = row.measure
            lines.append(
                f"{_label(key, label, rate, concurrency):<60} {row.orders:>10,} "
                f"{_num(m.requests_per_second):>9} {_num(m.p50_ms, 1):>8} "
                f"{_num(m.p99_ms, 1):>8} {m.non_2xx:>8,} {_num(m.cpu_ms, 2):>7}"
            )
            note = _note(key, m)
            if note:
                lines.append(f"    {note}")
        lines.append("")
    lines += _ratios(results, sizes, rate)
    return lines


def _note(key: str, m: Measure) -> str:
    e = m.extra
    opened = f"{e.get('new_connections', 0):,} new PostgreSQL connections"
    if key == "create":
        return (
            f"201 created {e.get('created', 0):,}, replayed {e.get('replayed', 0):,}, "
            f"4xx {e.get('client_error', 0):,}, 5xx {e.get('server_error', 0):,}, "
            f"socket errors {e.get('socket_errors', 0):,}; {opened}"
        )
    if key in ("read_rate", "node_read_rate"):
        sent, answered = int(e.get("sent", 0)), int(e.get("answered", 0))  # type: ignore[call-overload]
        late = f" ({sent - answered:,} unanswered 10 s later: non-2xx)" if sent > answered else ""
        cpu = float(e.get("cpu_share_of_one_core", 0))  # type: ignore[arg-type]
        return (
            f"sent {sent:,}, answered {answered:,}{late}; generator CPU {cpu:.0%} of one core; "
            f"{opened}"
        )
    if key in ("node_read", "read", "list"):
        return opened
    if key == "webhooks":
        return (
            f"accepted {e.get('accepted', 0):,}, duplicate {e.get('duplicate', 0):,}, "
            f"4xx {e.get('client_error', 0):,}, 5xx {e.get('server_error', 0):,}, "
            f"socket errors {e.get('socket_errors', 0):,}; the worker beside it handled "
            f"{e.get('handled_in_run', 0):,} of {e.get('kept_rows', 0):,} in the run and "
            f"finished {e.get('worker_jobs', 0):,} jobs at {_num(e.get('worker_cpu_ms'), 2)} ms "
            f"of CPU each (jobs now: {e.get('jobs') or 'none'}), after the warm-up's jobs ran "
            f"({e.get('warm_up_due', 0):,} still due); {opened}"
        )
    if key == "streams":
        opened_kb = int(e.get("rss_open_kb", 0)) - int(e.get("rss_before_kb", 0))  # type: ignore[call-overload]
        per_stream = opened_kb / max(int(e.get("opened", 0)), 1)  # type: ignore[call-overload]
        return (
            f"{e.get('opened', 0):,} of {e.get('streams', 0):,} opened "
            f"(refused: {e.get('refused') or 'none'}), {e.get('heard', 0):,} heard the change, "
            f"slowest {_num(e.get('max_ms'), 0)} ms (p50/p99 from the move's request; CPU ms "
            f"per stream); memory {per_stream:,.1f} KB a stream; the move answered "
            f"{e.get('move_status')} in {e.get('move_ms')} ms"
        )
    if key == "labels":
        return (
            f"{e.get('labelled', 0):,} of {e.get('orders', 0):,} orders labelled"
            + ("" if e.get("finished") else ", timed out")
            + f", after {e.get('warm-up labels', 0)} warm-up labels and the queue's earlier"
            f" jobs run ({e.get('jobs still due before the run', 0)} still due)"
        )
    return ""


def _rps(results: dict[str, dict[int, Row]], key: str, size: int) -> float | None:
    row = results.get(key, {}).get(size)
    return row.measure.requests_per_second if row else None


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def _size(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"


def _ratios(results: dict[str, dict[int, Row]], sizes: list[int], rate: float) -> list[str]:
    lines = [
        "CPU ms: CPU time of the server's own processes per request (per label for the worker);",
        "steadier than req/s when other work shares the cores.",
        "",
        "ratios (issue 9's targets in brackets)",
    ]

    def per_size(name: str, a: str, b: str, target: str) -> None:
        cells = "  ".join(
            f"{_size(s)}: {_ratio(_rps(results, a, s), _rps(results, b, s)):>6}" for s in sizes
        )
        lines.append(f"  {name:<44} {cells}   [{target}]")

    per_size("ReFit read / Node peer read", "read", "node_read", ">= 1.0x")
    per_size("ReFit read / pgbench 5 round trips", "read", "pgbench_5", ">= 0.5x")
    per_size("ReFit list / ReFit read", "list", "read", ">= 0.5x")
    if len(sizes) > 1:
        small, big = min(sizes), max(sizes)
        lines.append(
            f"  {'ReFit read ' + _size(big) + ' / read ' + _size(small):<44} "
            f"{_ratio(_rps(results, 'read', big), _rps(results, 'read', small)):>10}"
            "   [>= 0.83x, i.e. within 1.2x]"
        )

    def measured(name: str, key: str, cell: Callable[[Row], str], target: str) -> None:
        """One figure of `key`'s run at each size that has one."""
        by_size = results.get(key, {})
        cells = "  ".join(f"{_size(s)}: {cell(by_size[s])}" for s in sizes if s in by_size)
        lines.append(f"  {name:<44} {cells}   [{target}]")

    def p99(digits: int) -> Callable[[Row], str]:
        return lambda row: f"{_num(row.measure.p99_ms, digits):>6} ms"

    def per_second(row: Row) -> str:
        return f"{_num(row.measure.requests_per_second):>6}/s"

    measured(f"ReFit read p99 at {rate:g}/s offered", "read_rate", p99(1), "< 50 ms")
    # The same generator at the same rate against the peer: the p99s side by side.
    measured(f"Node peer read p99 at {rate:g}/s offered", "node_read_rate", p99(1), "ReFit's <= it")
    measured("ReFit create order", "create", per_second, ">= 300/s")
    measured("ReFit webhook intake (accepted)", "webhooks", per_second, ">= 1,000/s")
    measured("ReFit change to 1,000 streams, p99", "streams", p99(0), "< 1,000 ms")
    return lines
