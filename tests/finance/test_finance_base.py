"""Numeric helpers: division that never returns NaN/inf, and the documented quartile method."""

from __future__ import annotations

import math
import statistics

import pytest

from equitune.finance.base import clamp, finite_or_none, positive_div, quantile, quartiles, safe_div


def test_safe_div_returns_none_instead_of_nan_or_infinity() -> None:
    assert safe_div(6.0, 3.0) == 2.0
    assert safe_div(-6.0, 3.0) == -2.0
    assert safe_div(1.0, 0.0) is None
    assert safe_div(None, 2.0) is None
    assert safe_div(2.0, None) is None
    assert safe_div(1e308, 1e-308) is None  # overflows to inf
    assert safe_div(math.inf, 2.0) is None


def test_positive_div_needs_a_positive_denominator() -> None:
    assert positive_div(3.0, 4.0) == 0.75
    assert positive_div(3.0, -4.0) is None
    assert positive_div(3.0, 0.0) is None
    assert positive_div(-3.0, 4.0) == -0.75


def test_finite_or_none_and_clamp() -> None:
    assert finite_or_none(1.5) == 1.5
    assert finite_or_none(math.nan) is None
    assert finite_or_none(-math.inf) is None
    assert clamp(0.5, 0.0, 0.35) == 0.35
    assert clamp(-0.1, 0.0, 0.35) == 0.0
    assert clamp(0.2, 0.0, 0.35) == 0.2


def test_quartiles_by_linear_interpolation() -> None:
    # [1, 2, 3, 4]: positions (n-1)q = 0.75, 1.5, 2.25 -> 1 + 0.75*1 = 1.75, 2.5, 3 + 0.25*1 = 3.25
    assert quartiles([4.0, 1.0, 3.0, 2.0]) == pytest.approx((1.75, 2.5, 3.25))
    # [9, 11, 12]: positions 0.5, 1, 1.5 -> 10, 11, 11.5
    assert quartiles([11.0, 9.0, 12.0]) == pytest.approx((10.0, 11.0, 11.5))
    assert quartiles([5.0]) == (5.0, 5.0, 5.0)
    assert quantile([1.0, 3.0], 0.0) == 1.0
    assert quantile([1.0, 3.0], 1.0) == 3.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_quartiles_match_statistics_inclusive_method() -> None:
    values = [3.2, 7.7, 1.1, 9.4, 5.5, 6.0, 2.8]
    q1, median, q3 = quartiles(values)
    assert [q1, median, q3] == pytest.approx(statistics.quantiles(values, n=4, method="inclusive"))
    assert median == statistics.median(values)
