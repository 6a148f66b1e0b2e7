"""Evaluating a flag for a wallet: pure functions of the flag's settings and the address.

A wallet's bucket is a hash of the flag's name and the address, so it is the same in every
process and on every run, and differs between flags (being in the first 20% of one flag says
nothing about another). A rollout at p% takes the buckets below p%: raising p only adds
wallets, lowering it only removes them. The variant comes from a second, independent hash, so
the wallets let in by a rollout split across variants by the weights alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from refit.models.flag import FlagMode

BUCKETS = 10_000  # a percentage is taken to two decimals' worth of wallets


@dataclass(frozen=True)
class Variant:
    name: str
    weight: int


@dataclass(frozen=True)
class FlagRule:
    """What a process knows of one flag (a row of feature_flags, frozen)."""

    name: str
    mode: FlagMode
    percent: int = 0
    wallets: frozenset[str] = field(default_factory=frozenset)
    variants: tuple[Variant, ...] = ()

    def enabled_for(self, wallet: str) -> bool:
        if self.mode is FlagMode.ON:
            return True
        if self.mode is FlagMode.WALLETS:
            return wallet in self.wallets
        if self.mode is FlagMode.PERCENT:
            return bucket(self.name, wallet) < self.percent * BUCKETS // 100
        return False

    def variant_for(self, wallet: str) -> str | None:
        """The wallet's variant when the flag is on for it and has variants, else None."""
        if not self.variants or not self.enabled_for(wallet):
            return None
        point = _hash(f"{self.name}\x00variant", wallet) % sum(v.weight for v in self.variants)
        for variant in self.variants:
            if point < variant.weight:
                return variant.name
            point -= variant.weight
        raise AssertionError("unreachable: point < total weight")


def bucket(flag: str, wallet: str) -> int:
    """The wallet's place, 0..BUCKETS-1, in this flag's rollout."""
    return _hash(flag, wallet) % BUCKETS


def _hash(salt: str, wallet: str) -> int:
    # SHA-256 rather than hash(): Python salts str hashes per process.
    digest = hashlib.sha256(f"{salt}\x00{wallet}".encode()).digest()
    return int.from_bytes(digest[:8], "big")
