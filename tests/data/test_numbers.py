"""Figure extraction: every written form, its value in base units and its rounding tolerance."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from equitune.data.numbers import extract_figures
from equitune.formatting import fmt_bp, fmt_money, fmt_multiple, fmt_pct, fmt_price


def one(text: str):  # type: ignore[no-untyped-def]
    figures = extract_figures(text)
    assert len(figures) == 1, figures
    return figures[0]


@pytest.mark.parametrize(
    ("text", "kind", "value", "tolerance"),
    [
        ("$391.0B", "currency", 391.0e9, 0.05e9),
        ("$391.0 billion", "currency", 391.0e9, 0.05e9),
        ("$1.2bn", "currency", 1.2e9, 0.05e9),
        ("$850M", "currency", 850e6, 0.5e6),
        ("$1,234 million", "currency", 1234e6, 0.5e6),
        ("-$850M", "currency", -850e6, 0.5e6),
        ("$(3.4)B", "currency", -3.4e9, 0.05e9),
        ("$250.42", "currency", 250.42, 0.005),
        ("$3.86T", "currency", 3.86e12, 0.005e12),
        ("12.3%", "percent", 0.123, 0.0005),
        ("12.3 percent", "percent", 0.123, 0.0005),
        ("12.3 per cent", "percent", 0.123, 0.0005),
        ("+13.8%", "percent", 0.138, 0.0005),
        ("(2.1)%", "percent", -0.021, 0.0005),
        ("-0.8%", "percent", -0.008, 0.0005),
        ("100 bp", "bp", 0.01, 0.00005),
        ("+100 bp", "bp", 0.01, 0.00005),
        ("-800 bp", "bp", -0.08, 0.00005),
        ("12.3x", "multiple", 12.3, 0.05),
        ("12.3×", "multiple", 12.3, 0.05),
        ("15,408.1M", "number", 15408.1e6, 0.05e6),
        ("1.24", "number", 1.24, 0.005),
        ("3", "count", 3, 0),
        ("FY2024", "year", 2024, 0),
        ("FY25E", "year", 2025, 0),
        ("2025E", "year", 2025, 0),
        ("2024", "year", 2024, 0),
    ],
)
def test_forms(text: str, kind: str, value: float, tolerance: float) -> None:
    figure = one(f"The figure {text} here.")
    assert figure.kind == kind
    assert figure.value == pytest.approx(value)
    assert figure.tolerance == pytest.approx(tolerance)


def test_estimate_flag_and_dates() -> None:
    fy, est, day = extract_figures("FY2025E and FY2024 on 2024-12-31")
    assert fy.estimate and not est.estimate
    assert day.kind == "date" and day.value == dt.date(2024, 12, 31).toordinal()


@pytest.mark.parametrize(
    "text",
    [
        "the 10-K",
        "the S&P 500 index",
        "in Q3",
        "a 12-month target",
        "5G rollout",
        "CO2 output",
        "the 3rd year",
    ],
)
def test_names_with_digits_are_not_figures(text: str) -> None:
    assert extract_figures(text) == []


def test_closing_bracket_is_not_a_negative_sign() -> None:
    figures = extract_figures("(+13.8% upside vs $250.42)")
    assert [(f.raw, f.value) for f in figures] == [("+13.8%", 0.138), ("$250.42", 250.42)]


def test_opening_bracket_alone_is_not_negative() -> None:
    assert one("(12.0% of revenue").value == pytest.approx(0.12)


@given(st.floats(min_value=-5e6, max_value=5e6, allow_nan=False))
def test_money_round_trips(millions: float) -> None:
    figure = one(fmt_money(millions))
    assert figure.matches(millions * 1e6)


@given(st.floats(min_value=-2, max_value=2, allow_nan=False))
def test_percent_and_bp_round_trip(fraction: float) -> None:
    assert one(fmt_pct(fraction)).matches(fraction)
    assert one(fmt_pct(fraction, signed=True)).matches(fraction)
    assert one(fmt_bp(fraction)).matches(round(fraction, 4))


@given(st.floats(min_value=0, max_value=1e5, allow_nan=False))
def test_price_and_multiple_round_trip(value: float) -> None:
    assert one(fmt_price(value)).matches(value)
    assert one(fmt_multiple(value)).matches(value)


def test_formatting_refuses_non_finite() -> None:
    with pytest.raises(ValueError):
        fmt_pct(float("nan"))
