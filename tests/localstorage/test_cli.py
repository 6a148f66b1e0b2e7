"""The real `refit import-localstorage`: 2,000 orders in batches with a progress bar and a
summary, a broken file refused whole, and exit statuses a script can trust."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from bench.localstorage_exports import make_export
from tests.localstorage.helpers import count, example, write
from tests.processes import ROOT


async def _refit(settings, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REFIT_DATABASE_URL": settings.database_url,
        "REFIT_REDIS_URL": settings.redis_url,
        "COLUMNS": "120",
    }
    return await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "refit"), "import-localstorage", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _row(output: str, name: str) -> list[str]:
    """A row of the summary table: its label's cells."""
    line = next(line for line in output.splitlines() if f" {name} " in line and "│" in line)
    return [cell.strip() for cell in line.split("│")[2:-1]]


async def test_2000_orders_in_batches_with_a_summary_and_trustworthy_exit_codes(
    settings, resources, tmp_path
):
    files = [write(tmp_path / f"export-{i}.json", make_export(f"cli{i}", 500)) for i in range(4)]
    broken_doc = example()
    broken_doc["orders"][0]["status"] = "teleported"
    broken_doc["orders"][1]["quote"] = {"price_usd": "1.00"}
    broken = write(tmp_path / "broken.json", broken_doc)

    dry = await _refit(settings, "--dry-run", *files, broken)
    assert dry.returncode == 1, dry.stderr
    assert "broken.json: orders[0].status: unknown status 'teleported'" in dry.stderr
    assert "broken.json: orders[1].quote.price_sol: Field required" in dry.stderr
    assert await count(resources, "SELECT count(*) FROM users") == 0

    first = await _refit(settings, "--batch-size", "500", *files, broken)
    # A file was refused: 1, though the others went in.
    assert first.returncode == 1, first.stderr
    out = first.stderr
    assert "importing" in out and "2008/2008" in out  # the progress bar, done
    assert _row(out, "orders") == ["2000", "0"]
    assert _row(out, "addresses") == ["8", "0"]
    assert _row(out, "users") == ["4", ""]
    assert _row(out, "files refused") == ["1", ""]
    assert _row(out, "batches") == ["5", ""]  # 2,008 records, 500 a transaction
    assert await count(resources, "SELECT count(*) FROM orders") == 2000
    assert await count(resources, "SELECT count(*) FROM order_status_history") == 2000

    again = await _refit(settings, *files)
    assert again.returncode == 0, again.stderr
    assert _row(again.stderr, "orders") == ["0", "2000"]
    assert await count(resources, "SELECT count(*) FROM orders") == 2000
