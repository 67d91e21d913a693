"""WACC of Testco by hand, and every fallback of the cost of debt, tax rate, beta and weights."""

from __future__ import annotations

import pytest
from finance_factories import make_company

from equitune.errors import FinanceError
from equitune.finance import (
    ValuationAssumptions,
    after_tax_cost_of_debt,
    compute_wacc,
    cost_of_equity,
    market_data,
    weighted_average_cost_of_capital,
)
from equitune.finance.wacc import adjusted_beta


def test_building_blocks() -> None:
    assert cost_of_equity(0.04, 1.5, 0.06) == pytest.approx(0.13)  # 0.04 + 1.5 * 0.06
    assert after_tax_cost_of_debt(0.06, 0.25) == pytest.approx(0.045)  # 0.06 * 0.75
    # 300/400 * 0.10 + 100/400 * 0.04 = 0.075 + 0.01
    assert weighted_average_cost_of_capital(300, 100, 0.10, 0.04) == pytest.approx(0.085)
    with pytest.raises(FinanceError):
        weighted_average_cost_of_capital(0, 100, 0.10, 0.04)


def test_testco_wacc_by_hand() -> None:
    w = compute_wacc(make_company())
    assert w.raw_beta == 1.2 and w.beta == pytest.approx(2 / 3 * 1.2 + 1 / 3)  # Blume: 1.133333
    assert w.cost_of_equity == pytest.approx(0.045 + 1.1333333 * 0.0433)  # 0.094073
    assert (w.pre_tax_cost_of_debt, w.cost_of_debt_source) == (pytest.approx(0.05), "implied")  # 20 / 400
    assert (w.tax_rate, w.tax_rate_source) == (pytest.approx(0.25), "effective")  # 50 / 200
    assert w.after_tax_cost_of_debt == pytest.approx(0.0375)  # 0.05 * 0.75
    assert (w.equity_value, w.debt_value) == (2000.0, 400.0)
    assert w.equity_weight == pytest.approx(2000 / 2400)
    assert w.debt_weight == pytest.approx(400 / 2400)
    # 0.8333 * 0.094073 + 0.1667 * 0.0375 = 0.078394 + 0.00625
    assert w.wacc == pytest.approx(0.0846444, abs=1e-7)
    assert (w.risk_free_rate, w.equity_risk_premium, w.beta_source) == (0.045, 0.0433, "reported")
    assert len(w.notes) == 4
    assert w.notes[2] == "beta 1.13: reported beta 1.20 adjusted toward 1.0 (Blume: 2/3 x 1.20 + 1/3)"
    assert w.notes[3] == "equity risk premium 4.33%: Damodaran's implied ERP on 2025-01-01"
    raw = compute_wacc(make_company(), ValuationAssumptions(beta_adjustment="none"))
    assert raw.beta == 1.2 and raw.cost_of_equity == pytest.approx(0.045 + 1.2 * 0.0433)


def test_adjusted_beta_pulls_toward_the_market() -> None:
    assert adjusted_beta(1.5) == pytest.approx(4 / 3)  # 2/3 * 1.5 + 1/3
    assert adjusted_beta(0.4) == pytest.approx(0.6)  # a low beta rises
    assert adjusted_beta(1.0) == pytest.approx(1.0)  # the market's beta is its own fixed point
    assert adjusted_beta(1.7, "none") == 1.7
    with pytest.raises(FinanceError, match="unknown beta adjustment"):
        adjusted_beta(1.0, "vasicek")


def test_missing_interest_falls_back_to_rf_plus_spread() -> None:
    w = compute_wacc(make_company(latest={"interest_expense": None}))
    # 0.045 risk-free + 0.015 spread
    assert (w.pre_tax_cost_of_debt, w.cost_of_debt_source) == (pytest.approx(0.06), "fallback")
    assert "not reported" in w.notes[0]


def test_implied_cost_of_debt_is_limited() -> None:
    high = compute_wacc(make_company(latest={"interest_expense": 100.0}))  # 100 / 400 = 25%
    assert (high.pre_tax_cost_of_debt, high.cost_of_debt_source) == (0.15, "implied_limited")
    low = compute_wacc(make_company(latest={"interest_expense": 2.0}))  # 2 / 400 = 0.5%
    assert (low.pre_tax_cost_of_debt, low.cost_of_debt_source) == (0.02, "implied_limited")


def test_tax_rate_fallback_and_limits() -> None:
    loss = compute_wacc(make_company(latest={"pretax_income": -10.0, "income_tax_expense": 5.0}))
    assert (loss.tax_rate, loss.tax_rate_source) == (0.21, "fallback")
    high = compute_wacc(make_company(latest={"income_tax_expense": 90.0}))  # 90 / 200 = 45% -> 35%
    assert (high.tax_rate, high.tax_rate_source) == (0.35, "effective_limited")
    negative = compute_wacc(make_company(latest={"income_tax_expense": -20.0}))  # a tax credit -> 0%
    assert (negative.tax_rate, negative.tax_rate_source) == (0.0, "effective_limited")


def test_overrides_are_used_as_given() -> None:
    a = ValuationAssumptions(
        cost_of_debt=0.07, tax_rate=0.30, risk_free_rate=0.04, equity_risk_premium=0.05, beta_adjustment="none"
    )
    w = compute_wacc(make_company(), a)
    assert "equity risk premium 5.00% set in the assumptions" in w.notes
    assert (w.pre_tax_cost_of_debt, w.cost_of_debt_source) == (0.07, "override")
    assert (w.tax_rate, w.tax_rate_source) == (0.30, "override")
    assert w.cost_of_equity == pytest.approx(0.10)  # 0.04 + 1.2 * 0.05
    # 2000/2400 * 0.10 + 400/2400 * 0.07 * 0.7 = 0.083333 + 0.008167
    assert w.wacc == pytest.approx(0.0915)


def test_missing_beta_uses_the_default() -> None:
    w = compute_wacc(make_company(beta=None), ValuationAssumptions(default_beta=0.8))
    assert (w.beta, w.beta_source) == (0.8, "default")
    assert w.cost_of_equity == pytest.approx(0.07964)  # 0.045 + 0.8 * 0.0433 (the default is not adjusted)


def test_no_debt_is_all_equity() -> None:
    w = compute_wacc(make_company(latest={"total_debt": None}))
    assert (w.debt_value, w.equity_weight, w.debt_weight) == (0.0, 1.0, 0.0)
    assert w.wacc == pytest.approx(w.cost_of_equity)
    assert any("total debt not reported" in n for n in w.notes)


def test_market_data_derives_the_missing_figure() -> None:
    assert market_data(make_company(market_cap=None)).market_cap == pytest.approx(2000.0)  # 20 * 100
    derived_price = market_data(make_company(price=None))
    assert (derived_price.price, derived_price.price_source) == (pytest.approx(20.0), "derived")  # 2000 / 100
    derived_shares = market_data(make_company(diluted_shares=None))
    assert derived_shares.diluted_shares == pytest.approx(100.0)  # 2000 / 20
    with pytest.raises(FinanceError, match="missing: price, market_cap"):
        compute_wacc(make_company(price=None, market_cap=None))
