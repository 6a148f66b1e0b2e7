"""Money: USD to the cent, SOL to 0.0001, lamports exact. Every amount is a Decimal or an int.

Rounding always goes down (ROUND_DOWN): we never promise more than we pay. Lamports are
exactly SOL x 10^9, so the SOL a seller is shown and the lamports it stands for are the same.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal, localcontext

USD_STEP = Decimal("0.01")
# numeric(20, 8): a SOL/USD rate is recorded at this precision and SOL computed from the
# recorded value, so the stored rate reproduces the stored SOL amount exactly.
RATE_STEP = Decimal("0.00000001")
SOL_STEP = Decimal("0.0001")
LAMPORTS_PER_SOL = 10**9
# The columns' limits: numeric(10, 2) and numeric(10, 4).
MAX_USD = Decimal("99999999.99")
MAX_SOL = Decimal("999999.9999")


def usd_price(base_price_usd: Decimal, price_factor: Decimal) -> Decimal:
    return (base_price_usd * price_factor).quantize(USD_STEP, rounding=ROUND_DOWN)


def recorded_rate(usd_per_sol: Decimal) -> Decimal:
    """The rate as it is stored (8 places), to compute SOL from."""
    return usd_per_sol.quantize(RATE_STEP, rounding=ROUND_HALF_EVEN)


def usd_to_sol(usd: Decimal, usd_per_sol: Decimal) -> Decimal:
    # Enough digits that the quotient is exact well past the 4th decimal before rounding.
    with localcontext() as ctx:
        ctx.prec = 50
        return (usd / usd_per_sol).quantize(SOL_STEP, rounding=ROUND_DOWN)


def sol_to_lamports(sol: Decimal) -> int:
    lamports = sol * LAMPORTS_PER_SOL
    if lamports != lamports.to_integral_value():
        raise ValueError(f"{sol} SOL is not a whole number of lamports")
    return int(lamports)


def sol_at_least(lamports: int) -> Decimal:
    """The least SOL amount on the 0.0001 grid worth at least `lamports`: the one place money
    rounds up, for a floor the chain itself sets (a new wallet's rent-exempt minimum)."""
    return (Decimal(lamports) / LAMPORTS_PER_SOL).quantize(SOL_STEP, rounding=ROUND_UP)
