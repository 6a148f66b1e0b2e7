"""What a finalized payout tells the seller: the SOL paid, the rate it was priced at, and
where to check the transfer. Recorded with the order's move to completed (its history's
evidence) and so in the "you have been paid" email."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from refit.models.payout import Payout
from refit.orders.reads import public_explorer_url


def receipt(payout: Payout) -> dict[str, Any]:
    """JSON-ready: money as exact strings, the rate's time as ISO 8601 (None when the rate
    source gave none). `explorer_url` is None on the local ledger: the signature alone."""
    assert payout.signature is not None and payout.amount_sol is not None
    return {
        "signature": payout.signature,
        "lamports": payout.lamports,
        "amount_sol": _plain(payout.amount_sol),
        "usd_per_sol": _plain(payout.sol_usd_rate) if payout.sol_usd_rate is not None else None,
        "rate_source": payout.rate_source,
        "rate_at": payout.rate_at.isoformat() if payout.rate_at is not None else None,
        "explorer_url": public_explorer_url(payout.signature),
    }


def _plain(value: Decimal) -> str:
    # The stored scale's trailing zeros dropped, never an exponent: 150.00000000 -> "150".
    return format(value.normalize(), "f")
