"""The fundamental multi-stage DCF, the excess-return and the dividend-discount models: worked examples computed
by hand (each step in the comments), the rules that bound their inputs, and properties."""

from __future__ import annotations

import math

import pytest
from finance_factories import bank_year, make_company, simple_inputs

from equitune.errors import FinanceError
from equitune.finance import ValuationAssumptions
from equitune.finance.dcf import (
    dcf_inputs,
    fundamental_value_per_share,
    margin_path,
    run_dcf,
    staged_growth_path,
    value_driver_terminal_value,
)
from equitune.finance.reverse_dcf import reverse_dcf
from equitune.finance.sector_models import (
    dividend_discount_value,
    excess_return_value,
    implied_expectation,
    intrinsic_method,
)


def _fundamental(**changes: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {
        "model": "fundamental",
        "projection_years": 2,
        "high_growth_years": 1,
        "operating_margin": 0.20,
        "target_operating_margin": 0.20,
        "sales_to_capital": 2.0,
    }
    values.update(changes)
    return simple_inputs(**values)


def test_the_two_year_worked_example() -> None:
    # Revenue 1,000; g0 10% for 1 year then fading to 2% in year 2; margin 20%, tax 25%, sales-to-capital 2.0,
    # WACC 10%, new capital after year 2 earns the WACC; debt 300, cash 50, 100 shares.
    # Year 1: revenue 1,100, NOPAT 1,100 x 20% x 75% = 165, reinvestment (1,100 - 1,000) / 2 = 50, FCF 115.
    # Year 2: revenue 1,122, NOPAT 168.30, reinvestment 11, FCF 157.30.
    # Terminal: NOPAT_3 = 1,122 x 1.02 x 0.15 = 171.666; x (1 - 2% / 10%) / (10% - 2%) = 1,716.66 (= NOPAT_3 / WACC).
    result = run_dcf(_fundamental())
    y1, y2 = result.projection
    assert (y1.revenue, y1.nopat, y1.reinvestment, y1.free_cash_flow) == pytest.approx((1100, 165, 50, 115))
    assert (y2.revenue_growth, y2.revenue, y2.nopat, y2.free_cash_flow) == pytest.approx((0.02, 1122, 168.3, 157.3))
    assert result.terminal_value == pytest.approx(1122 * 1.02 * 0.15 / 0.10)
    assert result.terminal_roic == pytest.approx(0.10)
    ev = 115 / 1.1 + 157.3 / 1.21 + 1716.66 / 1.21
    assert result.enterprise_value == pytest.approx(ev, rel=1e-6)
    assert result.value_per_share == pytest.approx((ev - 300 + 50) / 100, rel=1e-6)
    assert fundamental_value_per_share(_fundamental(), 0.10, 0.20) == pytest.approx(result.value_per_share)


def test_value_driver_terminal_value() -> None:
    # Koller et al.: NOPAT 100, g 3%, RONIC 15%, WACC 9%: 100 x (1 - 0.03 / 0.15) / (0.09 - 0.03) = 1,333.33.
    assert value_driver_terminal_value(100.0, 0.09, 0.03, 0.15) == pytest.approx(1333.333, rel=1e-6)
    # RONIC = WACC: growth adds nothing, the value is NOPAT / WACC whatever g is.
    assert value_driver_terminal_value(100.0, 0.09, 0.03, 0.09) == pytest.approx(100 / 0.09)
    assert value_driver_terminal_value(100.0, 0.09, 0.0, 0.09) == pytest.approx(100 / 0.09)
    with pytest.raises(FinanceError, match="must exceed terminal growth"):
        value_driver_terminal_value(100.0, 0.03, 0.03, 0.09)


def test_growth_and_margin_paths() -> None:
    assert staged_growth_path(0.20, 0.02, 5, 2) == pytest.approx([0.20, 0.20, 0.14, 0.08, 0.02])
    assert staged_growth_path(0.20, 0.02, 3, 5) == pytest.approx([0.20, 0.20, 0.20])
    assert margin_path(0.10, 0.20, 4) == pytest.approx([0.125, 0.15, 0.175, 0.20])


def test_growth_is_never_free_and_value_falls_with_the_discount_rate() -> None:
    base = _fundamental(projection_years=10, high_growth_years=5)
    # More growth needs more capital: at a return on new capital below the WACC growth lowers the value.
    poor = base.model_copy(update={"sales_to_capital": 0.3})  # 20% x 75% x 0.3 = 4.5% < 10%
    assert fundamental_value_per_share(poor, 0.15, 0.2) < fundamental_value_per_share(poor, 0.05, 0.2)
    rich = base.model_copy(update={"sales_to_capital": 3.0})  # 45% > 10%
    assert fundamental_value_per_share(rich, 0.15, 0.2) > fundamental_value_per_share(rich, 0.05, 0.2)
    values = [fundamental_value_per_share(base, 0.10, 0.20, wacc=w) for w in (0.06, 0.08, 0.10, 0.12, 0.14)]
    assert values == sorted(values, reverse=True)
    margins = [fundamental_value_per_share(base, 0.10, m) for m in (0.05, 0.10, 0.20, 0.30)]
    assert margins == sorted(margins)


def test_inputs_from_the_record_are_explained() -> None:
    # Testco (finance_factories): tax 25%, EBIT 220 on revenue 1,100; invested capital 600 + 400 - 100 = 900,
    # so ROIC = 165 / 900 = 18.3% and sales-to-capital 1,100 / 900 = 1.22. Reinvestment = NOPAT - unlevered FCF:
    # (165 - 180) + (135 - 155) = -35 on NOPAT 300 -> rate -11.7%, fundamental growth -2.1%, limited to the range
    # between the 10% revenue CAGR and the 2.5% terminal growth.
    company = make_company()
    a = ValuationAssumptions(dcf_model="fundamental")
    inputs = dcf_inputs(company, 0.09, a)
    assert inputs.model == "fundamental" and inputs.projection_years == 10
    assert inputs.base_roic == pytest.approx(165 / 900)
    assert inputs.sales_to_capital == pytest.approx(1100 / 900)
    assert inputs.reinvestment_rate == pytest.approx(-35 / 300)
    assert inputs.fundamental_growth == pytest.approx(-35 / 300 * 165 / 900)
    assert (inputs.initial_growth, inputs.initial_growth_source) == (pytest.approx(0.025), "fundamental_limited")
    assert any("reinvestment rate -11.7% x ROIC 18.3%" in n for n in inputs.notes)
    assert inputs.target_operating_margin == pytest.approx(0.20)  # long_run_margin 'latest'
    history = dcf_inputs(company, 0.09, a.model_copy(update={"long_run_margin": "history"}))
    assert history.target_operating_margin == pytest.approx((0.20 + 0.18) / 2)
    # The five-year model is still there by name, unchanged.
    five = dcf_inputs(company, 0.09, ValuationAssumptions(dcf_model="five_year"))
    assert five.model == "five_year" and five.projection_years == 5 and five.initial_growth == pytest.approx(0.10)


def test_reverse_dcf_under_the_fundamental_model_reprices() -> None:
    inputs = _fundamental(projection_years=10, high_growth_years=5, sales_to_capital=3.0)
    price = fundamental_value_per_share(inputs, 0.10, 0.20) * 1.3
    implied = reverse_dcf(inputs, price)
    assert implied.implied_initial_growth is not None and implied.implied_initial_growth > 0.10
    assert fundamental_value_per_share(inputs, implied.implied_initial_growth, 0.20) == pytest.approx(price)
    assert implied.margin_kind == "long-run operating margin" and implied.implied_fcf_margin is not None
    # Where new revenue earns less than the WACC no growth can justify a higher price, and it says so.
    poor = reverse_dcf(inputs.model_copy(update={"sales_to_capital": 0.3}), price)
    assert poor.implied_initial_growth is None and "more growth lowers the value" in poor.notes[0]


_BANK_YEAR = bank_year()


def test_excess_return_worked_example() -> None:
    # Damodaran's excess-return model: BV 1,000, ROE 15%, ke 9%, g 3%:
    # equity = 1,000 + (15% - 9%) x 1,000 / (9% - 3%) = 2,000; justified P/B (15% - 3%) / (9% - 3%) = 2.0.
    bank = make_company(sub_industry="Diversified Banks", sector="Financials", latest=_BANK_YEAR, prior=_BANK_YEAR)
    assert intrinsic_method(bank)[0] == "excess_return"
    result = excess_return_value(bank, 0.09, ValuationAssumptions(terminal_growth=0.03))
    shares = bank.diluted_shares or 0
    assert result.roe == pytest.approx(0.15) and result.justified_pb == pytest.approx(2.0)
    assert result.excess_return == pytest.approx(60.0)
    assert result.value_per_share == pytest.approx(2000 / shares)
    # The ROE the price needs: g + P/B x (ke - g).
    roe, text = implied_expectation(
        bank, 0.09, ValuationAssumptions(terminal_growth=0.03), result, None, bank.price or 0
    )
    assert roe == pytest.approx(0.03 + result.current_pb * 0.06)
    assert text is not None and f"{roe:.1%}" in text
    # A bank earning less than its growth has no positive value: not meaningful, with the reason.
    weak = {**_BANK_YEAR, "net_income": 20.0}
    poor = excess_return_value(
        make_company(sub_industry="Regional Banks", latest=weak, prior=weak),
        0.09,
        ValuationAssumptions(terminal_growth=0.03),
    )
    assert not poor.meaningful and "does not exceed growth" in poor.issues[0]


def test_dividend_discount_worked_examples() -> None:
    a = ValuationAssumptions(terminal_growth=0.03, explicit_years=2, high_growth_years=1)
    # Flat dividend history: growth is bounded to [0%, 3%] and the sustainable (1 - 50%) x 20% = 10% is limited to
    # 3%, so the model is Gordon's: D1 / (ke - g) = 1.03 / (8% - 3%) = 20.60.
    year = {"dividends_per_share": 1.0, "net_income": 200.0, "total_equity": 1000.0}
    flat = make_company(sector="Utilities", diluted_shares=100.0, latest=year, prior=year)
    assert intrinsic_method(flat)[0] == "ddm"
    assert dividend_discount_value(flat, 0.08, a).value_per_share == pytest.approx(1.03 / 0.05)
    # Dividends grew 10%: growth 10% in year 1, 3% in year 2, then Gordon on D3.
    grown = make_company(
        sector="Utilities", diluted_shares=100.0, latest=year, prior={**year, "dividends_per_share": 1 / 1.1}
    )
    result = dividend_discount_value(grown, 0.08, a)
    d1, d2 = 1.1, 1.1 * 1.03
    assert result.initial_growth == pytest.approx(0.10)
    assert result.value_per_share == pytest.approx(d1 / 1.08 + d2 / 1.08**2 + d2 * 1.03 / 0.05 / 1.08**2)
    with pytest.raises(FinanceError, match="needs a dividend"):
        dividend_discount_value(make_company(sector="Utilities", latest={"dividends_per_share": 0.0}), 0.08, a)
    values = [dividend_discount_value(grown, k, a).value_per_share for k in (0.06, 0.08, 0.10)]
    assert values == sorted(values, reverse=True)


def test_dividend_growth_that_overflows_is_no_history() -> None:
    # A prior dividend of 1e-309 (what the property test found) would make the growth infinite: it is treated as
    # no usable history, so growth comes from payout x ROE and the valuation stays finite.
    a = ValuationAssumptions(terminal_growth=0.03, explicit_years=2, high_growth_years=1)
    year = {"dividends_per_share": 1.0, "net_income": 200.0, "total_equity": 1000.0}
    tiny = make_company(
        sector="Utilities", diluted_shares=100.0, latest=year, prior={**year, "dividends_per_share": 1e-309}
    )
    result = dividend_discount_value(tiny, 0.08, a)
    assert result.historical_growth is None
    assert math.isfinite(result.value_per_share)
