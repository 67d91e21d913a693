"""Financial ratios of Testco (see finance_factories) against hand-computed values, and the edge cases."""

from __future__ import annotations

import pytest
from finance_factories import make_company

from equitune.errors import FinanceError
from equitune.finance import ValuationAssumptions, cagr, compute_ratios, growth
from equitune.finance.ratios import revenue_cagr


def test_testco_ratios_by_hand() -> None:
    r = compute_ratios(make_company())
    assert (r.fiscal_year, r.prior_fiscal_year) == (2024, 2023)
    assert r.gross_margin == pytest.approx(0.40)  # 440 / 1,100
    assert r.operating_margin == pytest.approx(0.20)  # 220 / 1,100
    assert r.ebitda_margin == pytest.approx(0.25)  # 275 / 1,100
    assert r.net_margin == pytest.approx(0.136364, rel=1e-5)  # 150 / 1,100
    assert r.fcf_margin == pytest.approx(0.15)  # 165 / 1,100
    assert r.roe == pytest.approx(0.25)  # 150 / 600
    assert r.roa == pytest.approx(0.10)  # 150 / 1,500
    # tax 50 / 200 = 25%; NOPAT = 220 * 0.75 = 165; invested capital = 400 + 600 - 100 = 900
    assert (r.tax_rate, r.tax_rate_source) == (pytest.approx(0.25), "effective")
    assert r.effective_tax_rate == pytest.approx(0.25)
    assert r.roic == pytest.approx(165 / 900)  # 0.18333
    assert r.net_debt == pytest.approx(300.0)  # 400 - 100
    assert r.net_debt_to_ebitda == pytest.approx(1.090909, rel=1e-5)  # 300 / 275
    assert r.debt_to_equity == pytest.approx(0.666667, rel=1e-5)  # 400 / 600
    assert r.interest_coverage == pytest.approx(11.0)  # 220 / 20
    assert r.fcf_conversion == pytest.approx(1.10)  # 165 / 150
    assert r.dividend_payout == pytest.approx(0.40)  # 0.60 / 1.50
    assert r.revenue_growth == pytest.approx(0.10)  # 1,100 / 1,000 - 1
    assert r.ebitda_growth == pytest.approx(0.195652, rel=1e-5)  # 275 / 230 - 1
    assert r.eps_growth == pytest.approx(0.25)  # 1.50 / 1.20 - 1
    assert (r.revenue_cagr, r.revenue_cagr_years) == (pytest.approx(0.10), 1)


def test_tax_override_changes_roic() -> None:
    r = compute_ratios(make_company(), ValuationAssumptions(tax_rate=0.20))
    assert r.roic == pytest.approx(220 * 0.8 / 900)  # 0.19556
    assert r.tax_rate_source == "override"


def test_negative_ebitda_gives_no_leverage_multiple() -> None:
    r = compute_ratios(make_company(latest={"ebitda": -50.0}))
    assert r.ebitda_margin == pytest.approx(-50 / 1100)  # a negative margin is still a margin
    assert r.net_debt_to_ebitda is None
    assert r.ebitda_growth == pytest.approx(-50 / 230 - 1)  # from 230 down to -50


def test_zero_ebitda_and_zero_revenue() -> None:
    r = compute_ratios(make_company(latest={"ebitda": 0.0, "revenue": 0.0}))
    assert r.net_debt_to_ebitda is None
    assert r.gross_margin is None and r.ebitda_margin is None and r.fcf_margin is None
    assert r.revenue_growth == pytest.approx(-1.0)  # 0 / 1,000 - 1
    assert r.revenue_cagr is None  # no positive end revenue


def test_missing_interest_gives_no_coverage() -> None:
    assert compute_ratios(make_company(latest={"interest_expense": None})).interest_coverage is None
    assert compute_ratios(make_company(latest={"interest_expense": 0.0})).interest_coverage is None


def test_negative_equity_gives_no_roe_or_gearing() -> None:
    r = compute_ratios(make_company(latest={"total_equity": -200.0}))
    assert r.roe is None
    assert r.debt_to_equity is None
    # invested capital = 400 - 200 - 100 = 100 is still positive: ROIC = 165 / 100
    assert r.roic == pytest.approx(1.65)


def test_losses_and_negative_fcf() -> None:
    loss = {"net_income": -30.0, "eps_diluted": -0.30, "free_cash_flow": -40.0, "pretax_income": -20.0}
    r = compute_ratios(make_company(latest=loss))
    assert r.net_margin == pytest.approx(-30 / 1100)
    assert r.fcf_margin == pytest.approx(-40 / 1100)
    assert r.fcf_conversion is None  # FCF / a loss has no meaning
    assert r.dividend_payout is None
    assert r.eps_growth == pytest.approx(-0.30 / 1.20 - 1)  # -1.25: the base 1.20 is positive
    assert (r.tax_rate, r.tax_rate_source) == (0.21, "fallback")
    assert r.roic == pytest.approx(220 * 0.79 / 900)


def test_growth_from_a_loss_is_none() -> None:
    r = compute_ratios(make_company(prior={"eps_diluted": -0.5, "ebitda": -10.0}))
    assert r.eps_growth is None
    assert r.ebitda_growth is None


def test_single_year_has_no_growth() -> None:
    from finance_factories import FY2024

    r = compute_ratios(make_company(years=[FY2024]))
    assert r.prior_fiscal_year is None
    assert r.revenue_growth is None and r.eps_growth is None and r.revenue_cagr is None


def test_no_fiscal_year_is_a_finance_error() -> None:
    with pytest.raises(FinanceError, match="no fiscal-year figures"):
        compute_ratios(make_company(years=[]))


def test_growth_and_cagr_functions() -> None:
    assert growth(110.0, 100.0) == pytest.approx(0.10)
    assert growth(90.0, 100.0) == pytest.approx(-0.10)
    assert growth(10.0, 0.0) is None
    assert growth(10.0, -5.0) is None
    assert growth(None, 5.0) is None
    # (121 / 100) ** (1/2) - 1 = 0.10
    assert cagr(100.0, 121.0, 2) == pytest.approx(0.10)
    # (50 / 100) ** (1/1) - 1 = -0.5
    assert cagr(100.0, 50.0, 1) == pytest.approx(-0.5)
    assert cagr(100.0, 0.0, 3) == pytest.approx(-1.0)
    assert cagr(0.0, 10.0, 2) is None
    assert cagr(-10.0, 10.0, 2) is None
    assert cagr(10.0, -1.0, 2) is None
    assert cagr(10.0, 20.0, 0) is None


def test_revenue_cagr_window() -> None:
    years = [
        {"fiscal_year": 2024, "revenue": 1331.0},
        {"fiscal_year": 2023, "revenue": 1210.0},
        {"fiscal_year": 2022, "revenue": 1100.0},
        {"fiscal_year": 2021, "revenue": 1000.0},
        {"fiscal_year": 2020, "revenue": 10.0},
    ]
    company = make_company(years=years)
    # window of 3 years: 1,000 -> 1,331 over 3 years = 10% a year (FY2020 is outside the window)
    assert revenue_cagr(company, 3) == (pytest.approx(0.10), 3)
    # window of 1 year: 1,210 -> 1,331 = 10%
    assert revenue_cagr(company, 1) == (pytest.approx(0.10), 1)
