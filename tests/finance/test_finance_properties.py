"""Properties that hold for any valid inputs (hypothesis): monotonic DCF, monotonic sensitivity table, and
no NaN or infinity ever escaping analyze_company."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from equitune.finance import (
    DCFInputs,
    ValuationAssumptions,
    analyze_company,
    rating_for,
    run_dcf,
    sensitivity_table,
)
from equitune.market.models import Company, FiscalYear


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


@st.composite
def dcf_inputs(draw: st.DrawFn) -> DCFInputs:
    """DCF inputs with a positive FCF margin and a positive WACC above terminal growth."""
    growth = draw(_floats(-0.02, 0.05))
    return DCFInputs(
        ticker="PROP",
        base_fiscal_year=2024,
        base_revenue=draw(_floats(1.0, 1e6)),
        initial_growth=draw(_floats(-0.3, 0.5)),
        initial_growth_source="override",
        terminal_growth=growth,
        fcf_margin=draw(_floats(0.01, 0.6)),
        fcf_margin_source="override",
        interest_added_back=False,
        tax_rate=0.21,
        ebitda_margin=draw(st.none() | _floats(0.02, 0.8)),
        exit_multiple=draw(st.none() | _floats(1.0, 40.0)),
        exit_multiple_source="override",
        wacc=max(growth, 0.0) + draw(_floats(0.005, 0.2)),
        projection_years=draw(st.integers(1, 10)),
        mid_year_convention=draw(st.booleans()),
        terminal_value_method=draw(st.sampled_from(["gordon", "exit_multiple", "average"])),
        total_debt=draw(_floats(0.0, 1e6)),
        cash=draw(_floats(0.0, 1e6)),
        diluted_shares=draw(_floats(0.1, 1e4)),
    )


@settings(max_examples=150, deadline=None)
@given(inputs=dcf_inputs(), bump=_floats(0.001, 0.1))
def test_dcf_value_falls_as_wacc_rises(inputs: DCFInputs, bump: float) -> None:
    low = run_dcf(inputs).value_per_share
    high = run_dcf(inputs, wacc=inputs.wacc + bump).value_per_share
    assert high < low


@settings(max_examples=150, deadline=None)
@given(inputs=dcf_inputs(), share=_floats(0.05, 0.95))
def test_dcf_value_rises_with_terminal_growth(inputs: DCFInputs, share: float) -> None:
    # a higher growth still below the WACC: g + share * (WACC - g - 0.001)
    higher = inputs.terminal_growth + share * (inputs.wacc - inputs.terminal_growth - 0.001)
    before = run_dcf(inputs)
    after = run_dcf(inputs, terminal_growth=higher)
    if after.terminal_value_method == "exit_multiple" and inputs.projection_years == 1:
        # growth changes neither the single projected year nor an exit-multiple terminal value
        assert after.value_per_share == before.value_per_share
    else:
        assert after.value_per_share > before.value_per_share


@settings(max_examples=100, deadline=None)
@given(
    inputs=dcf_inputs(),
    wacc_step=_floats(0.001, 0.02),
    growth_step=_floats(0.001, 0.01),
    steps=st.integers(1, 3),
)
def test_sensitivity_table_is_monotonic(inputs: DCFInputs, wacc_step: float, growth_step: float, steps: int) -> None:
    table = sensitivity_table(inputs, wacc_step, growth_step, steps)
    size = 2 * steps + 1
    assert len(table.values) == size and all(len(row) == size for row in table.values)
    for i, w in enumerate(table.wacc_values):
        for j, g in enumerate(table.terminal_growth_values):
            assert (table.values[i][j] is None) == (w <= 0 or w <= g)
    flat_in_growth = inputs.terminal_value_method == "exit_multiple" and inputs.projection_years == 1
    for row in table.values:  # along a row, terminal growth rises: value rises
        cells = [v for v in row if v is not None]
        assert all(b > a or (flat_in_growth and b == a) for a, b in zip(cells, cells[1:], strict=False))
    for j in range(size):  # down a column, WACC rises: value falls
        column = [v for row in table.values if (v := row[j]) is not None]
        assert all(b < a for a, b in zip(column, column[1:], strict=False))


# --------------------------------------------------------------------------------------------------- analyze


def _maybe(strategy: st.SearchStrategy[float], none_share: int = 6) -> st.SearchStrategy[float | None]:
    # mostly reported, sometimes missing
    return st.one_of(*([strategy] * none_share), st.none())


@st.composite
def fiscal_year(draw: st.DrawFn, year: int) -> FiscalYear:
    money = _floats(-1e5, 1e5)
    fields: dict[str, Any] = {
        "fiscal_year": year,
        "revenue": draw(_maybe(_floats(-1e3, 1e6))),
        "gross_profit": draw(_maybe(money)),
        "operating_income": draw(_maybe(money)),
        "depreciation_amortization": draw(_maybe(_floats(0.0, 1e4))),
        "ebitda": draw(_maybe(money)),
        "interest_expense": draw(_maybe(_floats(-1e2, 1e4))),
        "pretax_income": draw(_maybe(money)),
        "income_tax_expense": draw(_maybe(_floats(-1e3, 1e4))),
        "net_income": draw(_maybe(money)),
        "eps_diluted": draw(_maybe(_floats(-50.0, 50.0))),
        "operating_cash_flow": draw(_maybe(money)),
        "capex": draw(_maybe(_floats(0.0, 1e5))),
        "free_cash_flow": draw(_maybe(money)),
        "cash": draw(_maybe(_floats(0.0, 1e6))),
        "total_debt": draw(_maybe(_floats(0.0, 1e6))),
        "total_equity": draw(_maybe(_floats(-1e5, 1e6))),
        "total_assets": draw(_maybe(_floats(1.0, 1e6))),
        "dividends_per_share": draw(_maybe(_floats(0.0, 20.0))),
    }
    return FiscalYear(**fields)


@st.composite
def company(draw: st.DrawFn, ticker: str) -> Company:
    count = draw(st.integers(1, 4))
    years = [draw(fiscal_year(2024 - i)) for i in range(count)]
    price = draw(_floats(0.01, 5000.0))
    shares = draw(_floats(0.1, 2e4))
    # any two of the three market figures are enough
    dropped = draw(st.sampled_from(["none", "price", "shares", "cap"]))
    return Company(
        ticker=ticker,
        name=f"{ticker} Inc.",
        sector=draw(st.sampled_from(["Industrials", "Utilities"])),
        sub_industry=draw(st.sampled_from(["Widgets", "Gadgets"])),
        fiscal_year_end="December",
        price=None if dropped == "price" else price,
        diluted_shares=None if dropped == "shares" else shares,
        market_cap=None if dropped == "cap" else price * shares,
        beta=draw(st.none() | _floats(-1.0, 4.0)),
        source="hypothesis",
        as_of=dt.date(2024, 12, 31),
        financials=years,
    )


@st.composite
def assumptions(draw: st.DrawFn) -> ValuationAssumptions:
    return ValuationAssumptions(
        risk_free_rate=draw(_floats(0.0, 0.1)),
        equity_risk_premium=draw(_floats(0.0, 0.1)),
        terminal_growth=draw(_floats(-0.02, 0.06)),
        projection_years=draw(st.integers(1, 15)),
        mid_year_convention=draw(st.booleans()),
        terminal_value_method=draw(st.sampled_from(["gordon", "exit_multiple", "average"])),
        exit_multiple=draw(st.none() | _floats(0.5, 50.0)),
        initial_revenue_growth=draw(st.none() | _floats(-0.5, 1.0)),
        fcf_margin=draw(st.none() | _floats(-1.0, 1.0)),
        dcf_weight=draw(_floats(0.0, 1.0)),
        min_peers=draw(st.integers(1, 4)),
    )


@settings(max_examples=60, deadline=None)
@given(
    target=company("TGT"),
    peers=st.lists(st.sampled_from(["P1", "P2", "P3", "P4", "P5"]), unique=True, max_size=5).flatmap(
        lambda names: st.tuples(*[company(n) for n in names])
    ),
    a=assumptions(),
)
def test_analyze_company_never_returns_nan_or_infinity(
    target: Company, peers: tuple[Company, ...], a: ValuationAssumptions
) -> None:
    result = analyze_company(target, [target, *peers], a)
    json.dumps(result.model_dump(mode="json"), allow_nan=False)  # raises on NaN or infinity
    if result.price_target is None:
        assert result.upside is None and result.rating is None
    else:
        assert result.price_target > 0
        assert result.upside is not None
        assert abs(result.upside - (result.price_target / result.market.price - 1)) <= 1e-9 * max(
            1.0, abs(result.upside)
        )
        assert result.rating == rating_for(result.upside, a)
    assert (result.dcf is None) == (result.dcf_error is not None)
