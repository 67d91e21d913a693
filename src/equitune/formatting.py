"""The one way equitune writes figures in text: money with B/M/T units, prices, percentages, multiples, bp.

``equitune.data.numbers.extract_figures`` parses every form written here back to the same value.
"""

from __future__ import annotations

import math
from functools import lru_cache

# Templates format the same engine outputs over and over; the writers are pure, so they are memoised.
_memo = lru_cache(maxsize=65536)


def _check(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"cannot format a non-finite figure: {value}")
    return value


@_memo
def fmt_money(amount_millions: float, decimals: int = 1) -> str:
    """A money amount given in millions, written with B/M units: 391035 -> '$391.0B', -850 -> '-$850M'."""
    value = _check(amount_millions)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 1_000_000:
        return f"{sign}${value / 1_000_000:,.{decimals + 1}f}T"
    if value >= 1_000:
        return f"{sign}${value / 1_000:,.{decimals}f}B"
    return f"{sign}${value:,.{decimals if value < 100 else 0}f}M"


@_memo
def fmt_price(value: float) -> str:
    """A per-share amount: 250.42 -> '$250.42'."""
    value = _check(value)
    return f"-${abs(value):,.2f}" if value < 0 else f"${value:,.2f}"


@_memo
def fmt_pct(fraction: float, decimals: int = 1, signed: bool = False) -> str:
    """A fraction as a percentage: 0.1234 -> '12.3%' ('+12.3%' when signed)."""
    value = _check(fraction) * 100
    return f"{value:+.{decimals}f}%" if signed else f"{value:.{decimals}f}%"


@_memo
def fmt_multiple(ratio: float, decimals: int = 1) -> str:
    """A valuation multiple or coverage ratio: 12.345 -> '12.3x'."""
    return f"{_check(ratio):.{decimals}f}x"


@_memo
def fmt_bp(fraction: float) -> str:
    """A rate shift in basis points: 0.01 -> '100 bp'."""
    return f"{_check(fraction) * 10_000:+.0f} bp"
