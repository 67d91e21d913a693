"""Numeric helpers and the base of every finance result model.

Every division in the finance engine goes through :func:`safe_div`, so a zero or missing denominator gives
``None`` rather than NaN or infinity, and every result model rejects NaN and infinity when it is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict


class ResultModel(BaseModel):
    """Base of the finance engine's result models: immutable, no unknown keys, never NaN or infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def is_finite(value: float | None) -> bool:
    """True when ``value`` is a real, finite number (not None, NaN or infinity)."""
    return value is not None and math.isfinite(value)


def finite_or_none(value: float | None) -> float | None:
    """``value`` when it is finite, otherwise ``None`` (how overflow is kept out of results)."""
    return value if value is not None and math.isfinite(value) else None


def safe_div(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing, the denominator is zero or the
    quotient is not finite."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    try:
        return finite_or_none(numerator / denominator)
    except OverflowError:
        return None


def positive_div(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` only when the denominator is strictly positive, else ``None``.

    Used for ratios whose meaning breaks on a negative base (ROE on negative equity, growth from a loss)."""
    if denominator is None or denominator <= 0:
        return None
    return safe_div(numerator, denominator)


def clamp(value: float, low: float, high: float) -> float:
    """``value`` limited to the closed range ``[low, high]``."""
    return max(low, min(high, value))


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 <= q <= 1) of already sorted values by linear interpolation between order
    statistics: position ``(n - 1) * q`` counted from 0. This is Excel's QUARTILE.INC, numpy's default
    ("linear") and Python's ``statistics.quantiles(method="inclusive")``; one value is its own quantile."""
    if not sorted_values:
        raise ValueError("quantile of an empty sequence")
    position = (len(sorted_values) - 1) * q
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile of ``values`` (inclusive linear method, see
    :func:`quantile`)."""
    ordered = sorted(values)
    return quantile(ordered, 0.25), quantile(ordered, 0.5), quantile(ordered, 0.75)


_NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
)


def number_word(n: int) -> str:
    """A small count in words (prose writes counts as words), digits beyond fifteen."""
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)
