"""A percentage rollout: the share it promises, the same wallets every time, and a wider
rollout that keeps everyone already in (done-when 2). Evaluated as the API evaluates it, from
the rule a process builds of the row."""

from __future__ import annotations

import random
from collections import Counter

from refit.flags.rules import FlagRule, Variant
from refit.flags.service import rule_from_row
from refit.models.flag import FlagMode
from tests.flags.helpers import random_wallet

WALLETS = 10_000


def _rule(percent: int, variants: tuple[Variant, ...] = ()) -> FlagRule:
    return FlagRule(name="new-checkout", mode=FlagMode.PERCENT, percent=percent, variants=variants)


def test_twenty_percent_is_twenty_percent_of_wallets_and_the_same_ones_every_time():
    wallets = [random_wallet() for _ in range(WALLETS)]
    at_20 = {w for w in wallets if _rule(20).enabled_for(w)}
    assert 0.18 * WALLETS <= len(at_20) <= 0.22 * WALLETS, len(at_20)

    # The same wallets on every evaluation, and from a rule rebuilt as another process
    # builds it from the row (no per-process salt).
    rebuilt = rule_from_row("new-checkout", "percent", 20, [], [])
    shuffled = random.sample(wallets, len(wallets))
    assert {w for w in shuffled if rebuilt.enabled_for(w)} == at_20

    at_30 = {w for w in wallets if _rule(30).enabled_for(w)}
    assert at_20 <= at_30, f"{len(at_20 - at_30)} wallets fell out when the rollout grew"
    assert 0.28 * WALLETS <= len(at_30) <= 0.32 * WALLETS, len(at_30)


def test_the_rollout_depends_on_the_flag_too():
    wallets = [random_wallet() for _ in range(WALLETS)]
    a = {w for w in wallets if _rule(20).enabled_for(w)}
    b = {
        w
        for w in wallets
        if FlagRule(name="other", mode=FlagMode.PERCENT, percent=20).enabled_for(w)
    }
    # Independent draws: about 4% of wallets are in both, not the same 20%.
    assert len(a & b) < 0.06 * WALLETS


def test_edges_off_on_wallets_zero_and_hundred():
    wallets = [random_wallet() for _ in range(1000)]
    listed = set(wallets[:3])
    assert not any(_rule(0).enabled_for(w) for w in wallets)
    assert all(_rule(100).enabled_for(w) for w in wallets)
    assert all(FlagRule("f", FlagMode.ON).enabled_for(w) for w in wallets)
    assert not any(FlagRule("f", FlagMode.OFF, percent=100).enabled_for(w) for w in wallets)
    by_wallet = FlagRule("f", FlagMode.WALLETS, wallets=frozenset(listed))
    assert {w for w in wallets if by_wallet.enabled_for(w)} == listed


def test_variants_split_by_weight_stably_and_only_among_wallets_let_in():
    variants = (Variant("control", 1), Variant("treatment", 3))
    wallets = [random_wallet() for _ in range(WALLETS)]
    rule = _rule(50, variants)
    assigned = {w: rule.variant_for(w) for w in wallets}
    assert {w for w, v in assigned.items() if v is not None} == {
        w for w in wallets if rule.enabled_for(w)
    }
    split = Counter(v for v in assigned.values() if v is not None)
    in_total = sum(split.values())
    assert 0.72 <= split["treatment"] / in_total <= 0.78, split
    # Stable, also as the rollout grows: a wallet keeps its variant.
    wider = _rule(80, variants)
    assert all(wider.variant_for(w) == v for w, v in assigned.items() if v is not None)
