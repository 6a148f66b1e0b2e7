"""`refit flags list|set|off` run for real against the test's database: what they print, what
they write (audited as `cli:<login>`), and that an API process hears of it."""

from __future__ import annotations

import asyncio
import getpass
import time

from refit.flags.follower import current_follower
from refit.models.flag import FlagMode
from tests.admin.test_operator_cli import _refit
from tests.flags.helpers import audit_rows, flag_rows, random_wallet


async def _until_seen(name: str, mode: FlagMode) -> None:
    deadline = time.monotonic() + 10
    while True:
        follower = current_follower()
        rule = follower.rules.get(name) if follower and follower.live else None
        if rule is not None and rule.mode is mode:
            return
        assert time.monotonic() < deadline, f"the API process did not see {name} {mode}"
        await asyncio.sleep(0.02)


async def test_set_list_and_off(client, resources, settings):
    actor = f"cli:{getpass.getuser()}"
    code, out = await _refit(
        settings,
        "flags",
        "set",
        "new-checkout",
        "--percent",
        "20",
        "--variant",
        "control=1",
        "--variant",
        "treatment=3",
    )
    assert code == 0, out
    assert "new-checkout\t20%\tcontrol=1 (0 exposures) treatment=3 (0 exposures)" in out
    await _until_seen("new-checkout", FlagMode.PERCENT)  # the API process in this test

    wallet = random_wallet()
    code, out = await _refit(settings, "flags", "set", "beta-wallets", "--wallet", wallet)
    assert code == 0, out
    code, out = await _refit(settings, "flags", "list")
    assert code == 0, out
    assert out.splitlines()[-2:] == [
        "beta-wallets\twallets (1)",
        "new-checkout\t20%\tcontrol=1 (0 exposures) treatment=3 (0 exposures)",
    ]

    code, out = await _refit(settings, "flags", "off", "new-checkout")
    assert code == 0, out
    assert "new-checkout\toff" in out
    await _until_seen("new-checkout", FlagMode.OFF)

    assert await flag_rows(resources) == [
        ("beta-wallets", FlagMode.WALLETS, 0, [wallet]),
        ("new-checkout", FlagMode.OFF, 20, []),
    ]
    audit = await audit_rows(resources, "new-checkout")
    assert [(a.actor, a.before and a.before["mode"], a.after["mode"]) for a in audit] == [
        (actor, None, "percent"),
        (actor, "percent", "off"),
    ]
    assert audit[0].after["variants"] == [
        {"name": "control", "weight": 1},
        {"name": "treatment", "weight": 3},
    ]


async def test_refusals_write_nothing(resources, settings):
    cases = [
        (("flags", "off", "no-such-flag"), 1, "No flag named 'no-such-flag'"),
        (("flags", "set", "Bad Name", "--on"), 1, "A flag name is"),
        (("flags", "set", "f", "--on", "--percent", "5"), 2, "exactly one of"),
        (("flags", "set", "f", "--on", "--variant", "a=0"), 2, "--variant"),
    ]
    for args, expected, message in cases:
        code, out = await _refit(settings, *args)
        assert code == expected, (args, out)
        assert message in out, (args, out)
    assert await flag_rows(resources) == []
