"""Price target blend and fallbacks, rating bands, and bull / base / bear scenarios."""

from __future__ import annotations

import pytest
from finance_factories import make_company, simple_inputs, widget_peers

from equitune.finance import (
    ComparablesResult,
    DCFResult,
    ScenarioShift,
    ValuationAssumptions,
    compare_with_peers,
    discounted_cash_flow,
    price_target,
    rating_for,
    run_scenarios,
)
from equitune.finance.dcf import run_dcf
from equitune.finance.target import blend_values, shift_inputs, upside_to
from equitune.market.models import Company


def test_rating_bands_at_their_edges() -> None:
    a = ValuationAssumptions()
    assert rating_for(0.15, a) == "Buy"
    assert rating_for(0.1499, a) == "Hold"
    assert rating_for(0.0, a) == "Hold"
    assert rating_for(-0.0001, a) == "Sell"
    narrow = ValuationAssumptions(buy_threshold=0.10, sell_threshold=-0.10)
    assert [rating_for(u, narrow) for u in (0.10, -0.05, -0.10, -0.11)] == ["Buy", "Hold", "Hold", "Sell"]


def test_blend_and_fallbacks() -> None:
    assert blend_values(20.0, 30.0, 0.5)[:4] == (pytest.approx(25.0), "blend", 0.5, 0.5)
    assert blend_values(20.0, 30.0, 0.7)[0] == pytest.approx(23.0)  # 0.7 * 20 + 0.3 * 30
    value, method, w_dcf, w_comps, flags = blend_values(None, 30.0, 0.5)
    assert (value, method, w_dcf, w_comps) == (30.0, "comps_only", 0.0, 1.0) and "DCF" in flags[0]
    value, method, *_ = blend_values(-4.0, 30.0, 0.5)
    assert (value, method) == (30.0, "comps_only")
    value, method, _, _, flags = blend_values(20.0, None, 0.5)
    assert (value, method) == (20.0, "dcf_only") and "comparables" in flags[0]
    assert blend_values(None, None, 0.5)[:2] == (None, "none")
    assert blend_values(20.0, 30.0, 1.0)[:2] == (20.0, "dcf_only")
    assert upside_to(25.0, 20.0) == pytest.approx(0.25)
    assert upside_to(None, 20.0) is None


def _testco_valuation(
    a: ValuationAssumptions | None = None,
) -> tuple[Company, ComparablesResult, DCFResult]:
    a = a or ValuationAssumptions()
    company = make_company()
    comps = compare_with_peers(company, [company, *widget_peers()], a)
    dcf = discounted_cash_flow(company, 0.09875, a, comps.summary("ev_ebitda").median)
    return company, comps, dcf


def test_price_target_blends_dcf_and_comps() -> None:
    _, comps, dcf = _testco_valuation()
    target = price_target(20.0, dcf, comps)
    assert target.method == "blend"
    expected = 0.5 * dcf.value_per_share + 0.5 * 26.70
    assert target.price_target == pytest.approx(expected)
    assert target.upside == pytest.approx(expected / 20.0 - 1)
    assert target.rating == rating_for(expected / 20.0 - 1, ValuationAssumptions())
    assert target.blend == "50% DCF + 50% comparables"
    assert target.flags == []


def test_price_target_falls_back_when_dcf_is_not_meaningful() -> None:
    _, comps, _ = _testco_valuation()
    negative = run_dcf(simple_inputs(total_debt=5000.0))
    target = price_target(20.0, negative, comps)
    assert target.method == "comps_only"
    assert target.price_target == pytest.approx(26.70)
    assert target.upside == pytest.approx(26.70 / 20 - 1)  # 33.5%
    assert target.rating == "Buy"
    # A negative DCF value is excluded with its reason, never shown as a value or blended.
    assert negative.value_per_share < 0 and target.dcf_value_per_share is None
    assert not target.dcf_meaningful and target.flags
    assert len(target.excluded) == 1 and "DCF value excluded" in target.excluded[0] and "$" not in target.excluded[0]
    assert "equity value" in target.excluded[0] and "not positive" in target.excluded[0]
    no_dcf = price_target(30.0, None, comps)
    assert no_dcf.method == "comps_only" and no_dcf.rating == "Sell"  # 26.70 / 30 - 1 = -11%


def test_price_target_without_any_value_has_no_rating() -> None:
    company = make_company()
    comps = compare_with_peers(company, [company])
    target = price_target(20.0, None, comps)
    assert (target.price_target, target.upside, target.rating, target.method) == (None, None, None, "none")


def test_shift_inputs_adds_each_lever() -> None:
    shifted = shift_inputs(
        simple_inputs(), ScenarioShift(revenue_growth=0.02, fcf_margin=-0.01, wacc=0.005, exit_multiple=-9.0)
    )
    assert shifted.initial_growth == pytest.approx(0.12)
    assert shifted.fcf_margin == pytest.approx(0.09)
    assert shifted.wacc == pytest.approx(0.105)
    assert shifted.exit_multiple is None  # 8 - 9 < 0: no exit value
    assert shift_inputs(simple_inputs(), ScenarioShift(exit_multiple=1.0)).exit_multiple == 9.0


def test_scenarios_order_and_base_equals_target() -> None:
    company, comps, dcf = _testco_valuation()
    target = price_target(20.0, dcf, comps)
    bear, base, bull = run_scenarios(dcf.inputs, comps, 20.0)
    assert [s.name for s in (bear, base, bull)] == ["bear", "base", "bull"]
    assert base.value_per_share == pytest.approx(target.price_target)
    assert base.dcf_value_per_share == pytest.approx(dcf.value_per_share)
    assert base.upside == pytest.approx(target.upside)
    assert bear.value_per_share is not None and bull.value_per_share is not None
    assert base.value_per_share is not None
    assert bear.value_per_share < base.value_per_share < bull.value_per_share
    assert bull.wacc == pytest.approx(0.09875 - 0.005)
    assert bull.fcf_margin == pytest.approx(dcf.inputs.fcf_margin + 0.02)
    assert bull.exit_multiple == pytest.approx(12.0)  # peer median 11 + 1
    # bull comps: EV/EBITDA at 12x gives (12 * 275 - 300) / 100 = 30; 0.4 * 30 + 0.4 * 30 + 0.2 * 19 = 27.8
    assert bull.comps_value_per_share == pytest.approx(27.8)
    assert bull.upside == pytest.approx(bull.value_per_share / 20.0 - 1)


def test_scenario_with_wacc_below_growth_reports_the_error() -> None:
    _, comps, _ = _testco_valuation()
    a = ValuationAssumptions(bear=ScenarioShift(wacc=0.05))
    inputs = simple_inputs(wacc=0.04, terminal_growth=0.02)
    steep_bull = ValuationAssumptions(bull=ScenarioShift(wacc=-0.03))  # 4% - 3% = 1% < 2% growth
    _, base, bull = run_scenarios(inputs, comps, 20.0, steep_bull)
    assert bull.dcf_value_per_share is None
    assert any("must exceed terminal growth" in i for i in bull.issues)
    assert bull.method == "comps_only"
    assert base.dcf_value_per_share is not None
    no_inputs = run_scenarios(None, comps, 20.0, a)
    assert all(s.dcf_value_per_share is None and s.method == "comps_only" for s in no_inputs)
