"""DCF against a three-year projection worked out by hand, the terminal values, the bridge and its flags.

The worked example (``finance_factories.simple_inputs``): base revenue 1,000; growth 10% fading to 2%
over N = 3 years (10%, 6%, 2%); FCF margin 10%; WACC 10%; debt 300, cash 50, 100m shares; EBITDA margin
20%, exit 8x.

    year  revenue                 FCF       discount factor     PV
    1     1,000 * 1.10 = 1,100    110.000   1/1.1   = 0.909091  100.000000
    2     1,100 * 1.06 = 1,166    116.600   1/1.21  = 0.826446   96.363636
    3     1,166 * 1.02 = 1,189.32 118.932   1/1.331 = 0.751315   89.355372
                                                          sum   285.719008
    Gordon TV = 118.932 * 1.02 / (0.10 - 0.02) = 1,516.383;  PV = 1,516.383 / 1.331 = 1,139.280992
    EV = 285.719008 + 1,139.280992 = 1,425.000;  equity = 1,425 - 300 + 50 = 1,175;  per share 11.75
    exit TV = 1,189.32 * 0.20 * 8 = 237.864 * 8 = 1,902.912;  PV = 1,429.685950
"""

from __future__ import annotations

import pytest
from finance_factories import FY2024, make_company, simple_inputs

from equitune.errors import FinanceError
from equitune.finance import (
    ValuationAssumptions,
    dcf_inputs,
    discounted_cash_flow,
    exit_multiple_terminal_value,
    gordon_terminal_value,
    growth_path,
    run_dcf,
    sensitivity_table,
)
from equitune.finance.dcf import historical_margin, implied_perpetual_growth, unlevered_free_cash_flow


def test_growth_path_fades_linearly_to_terminal_growth() -> None:
    assert growth_path(0.10, 0.02, 3) == pytest.approx([0.10, 0.06, 0.02])
    assert growth_path(0.10, 0.025, 5) == pytest.approx([0.10, 0.08125, 0.0625, 0.04375, 0.025])
    assert growth_path(0.10, 0.02, 1) == [0.10]
    assert growth_path(-0.05, 0.02, 2) == pytest.approx([-0.05, 0.02])  # fading up from a decline


def test_terminal_value_formulas() -> None:
    assert gordon_terminal_value(100.0, 0.10, 0.02) == pytest.approx(1275.0)  # 100 * 1.02 / 0.08
    assert exit_multiple_terminal_value(50.0, 10.0) == 500.0
    assert exit_multiple_terminal_value(-50.0, 10.0) is None
    assert exit_multiple_terminal_value(50.0, None) is None
    # inverse of Gordon: TV 1,275 with FCF 100 at 10% implies 2% growth
    assert implied_perpetual_growth(1275.0, 100.0, 0.10) == pytest.approx(0.02)


def test_wacc_at_or_below_growth_raises() -> None:
    with pytest.raises(FinanceError, match="must exceed terminal growth"):
        gordon_terminal_value(100.0, 0.02, 0.02)
    with pytest.raises(FinanceError, match="must exceed terminal growth"):
        run_dcf(simple_inputs(wacc=0.015))
    with pytest.raises(FinanceError, match="must be positive"):
        run_dcf(simple_inputs(wacc=0.0, terminal_growth=-0.01))


def test_worked_example_gordon() -> None:
    r = run_dcf(simple_inputs())
    assert [p.revenue for p in r.projection] == pytest.approx([1100.0, 1166.0, 1189.32])
    assert [p.free_cash_flow for p in r.projection] == pytest.approx([110.0, 116.6, 118.932])
    factors = [p.discount_factor for p in r.projection]
    assert factors == pytest.approx([0.909091, 0.826446, 0.751315], rel=1e-5)
    assert [p.present_value for p in r.projection] == pytest.approx([100.0, 96.363636, 89.355372], rel=1e-7)
    assert [p.fiscal_year for p in r.projection] == [2025, 2026, 2027]
    assert r.sum_pv_fcf == pytest.approx(285.719008, rel=1e-8)
    assert r.terminal_value_gordon == pytest.approx(1516.383)
    assert r.pv_terminal_value == pytest.approx(1139.280992, rel=1e-8)
    assert r.enterprise_value == pytest.approx(1425.0)
    assert r.equity_value == pytest.approx(1175.0)  # 1,425 - 300 + 50
    assert r.value_per_share == pytest.approx(11.75)
    assert r.terminal_value_method == "gordon"
    assert r.terminal_value_share == pytest.approx(1139.280992 / 1425.0)  # 0.7995
    # both terminal values are reported whatever the method
    assert r.final_year_ebitda == pytest.approx(237.864)  # 1,189.32 * 0.20
    assert r.terminal_value_exit == pytest.approx(1902.912)  # 237.864 * 8
    assert r.implied_exit_multiple == pytest.approx(6.375)  # 1,516.383 / 237.864
    # (1,902.912 * 0.10 - 118.932) / (1,902.912 + 118.932) = 71.3592 / 2,021.844
    assert r.implied_terminal_growth == pytest.approx(0.0352941, rel=1e-5)
    assert r.meaningful and r.issues == []


def test_worked_example_exit_multiple_and_average() -> None:
    exit_only = run_dcf(simple_inputs(terminal_value_method="exit_multiple"))
    # EV = 285.719008 + 1,429.685950 = 1,715.404959; equity 1,465.404959
    assert exit_only.pv_terminal_value == pytest.approx(1429.685950, rel=1e-8)
    assert exit_only.value_per_share == pytest.approx(14.654050, rel=1e-7)
    average = run_dcf(simple_inputs(terminal_value_method="average"))
    # TV = (1,516.383 + 1,902.912) / 2 = 1,709.6475; EV = 285.719008 + 1,284.483471 = 1,570.202479
    assert average.terminal_value == pytest.approx(1709.6475)
    assert average.value_per_share == pytest.approx(13.202025, rel=1e-7)


def test_exit_method_without_a_multiple_falls_back_to_gordon() -> None:
    r = run_dcf(simple_inputs(terminal_value_method="exit_multiple", exit_multiple=None))
    assert r.terminal_value_method == "gordon"
    assert r.value_per_share == pytest.approx(11.75)
    assert r.terminal_value_exit is None
    assert "fell back to Gordon" in r.issues[0]
    no_ebitda = run_dcf(simple_inputs(terminal_value_method="average", ebitda_margin=-0.05))
    assert no_ebitda.terminal_value_method == "gordon" and no_ebitda.implied_exit_multiple is None


def test_mid_year_convention() -> None:
    r = run_dcf(simple_inputs(mid_year_convention=True))
    # PVs at t - 0.5: 110/1.1**0.5 + 116.6/1.1**1.5 + 118.932/1.1**2.5 = 104.880885 + 101.067034 + 93.716705
    assert r.sum_pv_fcf == pytest.approx(299.664624, rel=1e-8)
    # terminal value still discounted from the end of year 3
    assert r.pv_terminal_value == pytest.approx(1139.280992, rel=1e-8)
    assert r.value_per_share == pytest.approx(11.889456, rel=1e-7)


def test_negative_equity_is_flagged_not_hidden() -> None:
    r = run_dcf(simple_inputs(total_debt=2000.0))
    assert r.equity_value == pytest.approx(-525.0)  # 1,425 - 2,000 + 50
    assert r.value_per_share == pytest.approx(-5.25)
    assert not r.meaningful
    assert any("equity value" in issue for issue in r.issues)


def test_negative_fcf_is_flagged() -> None:
    r = run_dcf(simple_inputs(fcf_margin=-0.10))
    # every cash flow flips sign: EV = -1,425; equity = -1,425 - 300 + 50 = -1,675
    assert r.enterprise_value == pytest.approx(-1425.0)
    assert r.value_per_share == pytest.approx(-16.75)
    assert not r.meaningful
    assert r.terminal_value_share is None
    assert any("FCF margin" in issue for issue in r.issues)
    assert any("enterprise value" in issue for issue in r.issues)


def test_sensitivity_table() -> None:
    inputs = simple_inputs(wacc=0.03, terminal_growth=0.02)
    table = sensitivity_table(inputs, wacc_step=0.005, growth_step=0.005, steps=2)
    assert table.wacc_values == pytest.approx([0.02, 0.025, 0.03, 0.035, 0.04])
    assert table.terminal_growth_values == pytest.approx([0.01, 0.015, 0.02, 0.025, 0.03])
    assert (table.base_row, table.base_column) == (2, 2)
    assert table.values[2][2] == pytest.approx(run_dcf(inputs).value_per_share)
    # WACC <= g cells have no value: (2%, 2%), (2%, 2.5%), (2.5%, 2.5%), (3%, 3%) ...
    assert table.values[0][2:] == [None, None, None]
    assert table.values[1][3:] == [None, None]
    assert table.values[2][4] is None
    assert table.values[0][0] is not None and table.values[4][4] is not None
    # one cell by hand: the worked example at WACC 10%, g 2% sits at the centre of a table around it
    centred = sensitivity_table(simple_inputs(), 0.01, 0.01, 1)
    assert centred.values[1][1] == pytest.approx(11.75)


def test_dcf_inputs_from_testco() -> None:
    inputs = dcf_inputs(make_company(), 0.09875, ValuationAssumptions(), peer_ev_ebitda=11.0)
    assert (inputs.base_revenue, inputs.base_fiscal_year) == (1100.0, 2024)
    assert (inputs.initial_growth, inputs.initial_growth_source) == (pytest.approx(0.10), "historical_cagr")
    # unlevered FCF margin, tax 25%: FY2024 (165 + 20*0.75)/1,100 = 0.163636; FY2023 (140 + 15)/1,000 = 0.155
    assert inputs.fcf_margin == pytest.approx((180 / 1100 + 0.155) / 2)  # 0.159318
    assert inputs.interest_added_back and inputs.tax_rate == pytest.approx(0.25)
    assert inputs.ebitda_margin == pytest.approx(0.24)  # (0.25 + 0.23) / 2
    assert (inputs.exit_multiple, inputs.exit_multiple_source) == (11.0, "peer_median")
    assert (inputs.total_debt, inputs.cash, inputs.diluted_shares) == (400.0, 100.0, 100.0)
    assert (inputs.projection_years, inputs.terminal_growth) == (5, 0.025)


def test_dcf_inputs_overrides_limits_and_fallbacks() -> None:
    company = make_company()
    a = ValuationAssumptions(initial_revenue_growth=0.05, fcf_margin=0.12, exit_multiple=9.0)
    inputs = dcf_inputs(company, 0.09, a, peer_ev_ebitda=11.0)
    assert (inputs.initial_growth, inputs.fcf_margin, inputs.exit_multiple) == (0.05, 0.12, 9.0)
    assert not inputs.interest_added_back
    # 1,100 / 500 - 1 = 120% growth is limited to the 25% cap; no peers and no override: no exit multiple
    fast = dcf_inputs(make_company(prior={"revenue": 500.0}), 0.09)
    assert (fast.initial_growth, fast.initial_growth_source) == (0.25, "historical_cagr_limited")
    assert (fast.exit_multiple, fast.exit_multiple_source) == (None, "none")
    single = dcf_inputs(make_company(years=[FY2024]), 0.09)
    assert (single.initial_growth, single.initial_growth_source) == (0.025, "terminal_growth")
    assert single.fcf_margin == pytest.approx(180 / 1100)
    banks = dcf_inputs(make_company(sector="Financials"), 0.09)
    assert banks.fcf_margin == pytest.approx((0.15 + 0.14) / 2) and not banks.interest_added_back


def test_dcf_inputs_needs_revenue_and_cash_flow() -> None:
    with pytest.raises(FinanceError, match="positive revenue"):
        dcf_inputs(make_company(latest={"revenue": 0.0}), 0.09)
    no_fcf = {"free_cash_flow": None, "operating_cash_flow": None}
    with pytest.raises(FinanceError, match="free cash flow"):
        dcf_inputs(make_company(latest=no_fcf, prior=no_fcf), 0.09)


def test_fcf_is_derived_from_ocf_and_capex_when_missing() -> None:
    year = make_company(latest={"free_cash_flow": None}).latest
    assert unlevered_free_cash_flow(year, 0.25, add_back_interest=False) == 165.0  # 240 - 75
    assert unlevered_free_cash_flow(year, 0.25) == 180.0  # + 20 * 0.75
    assert historical_margin(make_company(), 1, "ebitda") == pytest.approx(0.25)


def test_discounted_cash_flow_attaches_the_sensitivity_table() -> None:
    r = discounted_cash_flow(make_company(), 0.09875, ValuationAssumptions(sensitivity_steps=1), 11.0)
    assert r.sensitivity is not None
    assert len(r.sensitivity.values) == 3 and all(len(row) == 3 for row in r.sensitivity.values)
    assert r.sensitivity.values[1][1] == pytest.approx(r.value_per_share)
    assert r.sensitivity.wacc_values == pytest.approx([0.09375, 0.09875, 0.10375])
    with pytest.raises(FinanceError):
        discounted_cash_flow(make_company(), 0.02)
