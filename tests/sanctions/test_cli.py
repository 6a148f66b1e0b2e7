"""`refit sanctions load|status` run for real against the test's database: what they print,
their exit statuses, and what a refused file leaves (the list loaded before)."""

from __future__ import annotations

from refit.sanctions import service
from refit.sanctions.cli import EMPTY_TEST_LIST
from tests.admin.test_operator_cli import _refit
from tests.sanctions.helpers import LISTED, NOT_LISTED, days_ago, sample_xml


async def _listed(resources, address):
    async with resources.sessionmaker() as session, session.begin():
        return (await service.screen(session, address)).hit


async def test_load_then_status(resources, settings, tmp_path):
    code, out = await _refit(settings, "sanctions", "status")
    assert code == 1, out
    assert "no sanctions list loaded" in out

    sdn = tmp_path / "SDN.XML"
    sdn.write_bytes(sample_xml(days_ago(1)))
    code, out = await _refit(settings, "sanctions", "load", str(sdn))
    assert code == 0, out
    assert (
        f"sanctions list loaded: published {days_ago(1)}, 3 records, 2 Solana addresses kept "
        "(4 other digital-currency addresses skipped)"
    ) in out
    assert await _listed(resources, LISTED) and not await _listed(resources, NOT_LISTED)

    code, out = await _refit(settings, "sanctions", "status")
    assert code == 0, out
    assert f"published {days_ago(1)} (1 day old)" in out
    assert "3 records, 2 Solana addresses" in out
    assert "fresh (max 7 days)" in out

    code, out = await _refit(settings, "sanctions", "status", REFIT_SANCTIONS_MAX_AGE_DAYS="1")
    assert code == 1, out
    assert "stale: older than 1 days" in out


async def test_refused_files_say_why_in_one_line_and_keep_the_list(resources, settings, tmp_path):
    sdn = tmp_path / "SDN.XML"
    sdn.write_bytes(sample_xml(days_ago(1)))
    code, out = await _refit(settings, "sanctions", "load", str(sdn))
    assert code == 0, out

    broken = tmp_path / "broken.xml"
    broken.write_bytes(sample_xml(days_ago(0))[:2000])  # a download cut short
    code, out = await _refit(settings, "sanctions", "load", str(broken))
    assert code == 1, out
    [line] = out.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"refit: {broken}: not well-formed XML: "), out

    older = tmp_path / "older.xml"
    older.write_bytes(sample_xml(days_ago(5)))
    code, out = await _refit(settings, "sanctions", "load", str(older))
    assert code == 1, out
    assert "older than the one loaded" in out and "--allow-older" in out

    code, out = await _refit(settings, "sanctions", "load", str(tmp_path / "missing.xml"))
    assert code == 2, out  # bad usage: click's own check
    assert "does not exist" in out
    assert await _listed(resources, LISTED)

    # The empty list made for tests loads (with --allow-older: it is dated 2000) and says so.
    code, out = await _refit(settings, "sanctions", "load", str(EMPTY_TEST_LIST), "--allow-older")
    assert code == 0, out
    assert "0 Solana addresses kept" in out and "made for tests, not OFAC's" in out
    assert not await _listed(resources, LISTED)
    code, out = await _refit(settings, "sanctions", "status")
    assert code == 1, out
    assert "published 2000-01-01" in out and "made for tests" in out and "stale" in out
