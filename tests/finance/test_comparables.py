"""Comparables of Testco against invented Widgets peers (multiples worked out in finance_factories)."""

from __future__ import annotations

import pytest
from finance_factories import make_company, make_peer, widget_peers

from equitune.finance import (
    ValuationAssumptions,
    combine_implied_values,
    compare_with_peers,
    enterprise_value,
    implied_value_per_share,
    peer_multiples,
    select_peers,
)
from equitune.finance.comparables import shifted_comparables_value


def test_peers_are_the_sub_industry_without_the_company() -> None:
    company = make_company()
    peers, basis, group, count = select_peers(company, [company, *widget_peers()], min_peers=3)
    assert [p.ticker for p in peers] == ["AAA", "BBB", "CCC"]
    assert (basis, group, count) == ("sub_industry", "Widgets", 3)


def test_fewer_than_min_peers_falls_back_to_the_sector() -> None:
    company = make_company()
    universe = [company, *widget_peers()[1:]]  # only BBB and CCC are Widgets
    peers, basis, group, count = select_peers(company, universe, min_peers=3)
    assert [p.ticker for p in peers] == ["BBB", "CCC", "OTH"]  # XOT is in another sector
    assert (basis, group, count) == ("sector", "Industrials", 2)
    peers, basis, _, _ = select_peers(company, universe, min_peers=2)
    assert basis == "sub_industry" and len(peers) == 2


def test_enterprise_value() -> None:
    assert enterprise_value(1000.0, 200.0, 100.0) == 1100.0
    assert enterprise_value(1000.0, None, 100.0) is None


def test_testco_comparables_by_hand() -> None:
    company = make_company()
    comps = compare_with_peers(company, [company, *widget_peers()])
    assert comps.basis == "sub_industry" and [p.ticker for p in comps.peers] == ["AAA", "BBB", "CCC"]
    assert comps.excluded == []

    ev_ebitda = comps.summary("ev_ebitda")
    # peers 9, 11, 12: Q1 = 9 + 0.5 * 2 = 10, median 11, Q3 = 11 + 0.5 * 1 = 11.5
    assert (ev_ebitda.low, ev_ebitda.median, ev_ebitda.high) == pytest.approx((10.0, 11.0, 11.5))
    # 11 * 275 = 3,025 EV - 400 debt + 100 cash = 2,725 / 100 shares
    assert ev_ebitda.implied_value_per_share == pytest.approx(27.25)
    assert ev_ebitda.implied_value_low == pytest.approx(24.50)  # (10 * 275 - 300) / 100
    assert ev_ebitda.implied_value_high == pytest.approx(28.625)  # (11.5 * 275 - 300) / 100
    assert ev_ebitda.company_multiple == pytest.approx(2300 / 275)  # (2,000 + 400 - 100) / 275 = 8.36

    pe = comps.summary("pe")
    # peers 16, 20, 30 -> 18, 20, 25; 20 * 150 net income / 100 shares = 30
    assert (pe.low, pe.median, pe.high) == pytest.approx((18.0, 20.0, 25.0))
    assert pe.implied_value_per_share == pytest.approx(30.0)
    assert pe.company_multiple == pytest.approx(2000 / 150)

    ev_sales = comps.summary("ev_sales")
    # peers 1.5, 2, 3 -> 1.75, 2, 2.5; (2 * 1,100 - 300) / 100 = 19
    assert (ev_sales.low, ev_sales.median, ev_sales.high) == pytest.approx((1.75, 2.0, 2.5))
    assert ev_sales.implied_value_per_share == pytest.approx(19.0)

    # 0.4 * 27.25 + 0.4 * 30 + 0.2 * 19 = 10.9 + 12 + 3.8
    assert comps.value_per_share == pytest.approx(26.70)
    assert [m.effective_weight for m in comps.multiples] == pytest.approx([0.4, 0.4, 0.2])
    assert comps.meaningful and comps.issues == []


def test_non_positive_denominators_are_excluded_with_reasons() -> None:
    company = make_company()
    peers = [
        *widget_peers()[:3],
        make_peer("LOS", market_cap=900, debt=100, cash=0, ebitda=-20, revenue=400, net_income=-60),
        make_peer("NET", market_cap=100, debt=0, cash=300, ebitda=10, revenue=50, net_income=5),
    ]
    comps = compare_with_peers(company, [company, *peers])
    reasons = {(e.ticker, e.multiple): e.reason for e in comps.excluded}
    assert "EBITDA -20 not positive" in reasons[("LOS", "ev_ebitda")]
    assert "net income -60 not positive" in reasons[("LOS", "pe")]
    assert ("LOS", "ev_sales") not in reasons  # EV 1,000 / revenue 400 = 2.5 is valid
    assert "enterprise value -200 not positive" in reasons[("NET", "ev_ebitda")]
    assert "enterprise value" in reasons[("NET", "ev_sales")]
    assert ("NET", "pe") not in reasons  # 100 / 5 = 20
    # EV/Sales now over 1.5, 2, 2.5, 3 -> median 2.25; P/E over 16, 20, 20, 30 -> median 20
    assert comps.summary("ev_sales").median == pytest.approx(2.25)
    assert comps.summary("ev_sales").peer_count == 4
    assert comps.summary("pe").median == pytest.approx(20.0)


def test_peer_without_market_value_is_excluded_entirely() -> None:
    row, excluded = peer_multiples(make_company("NOP", price=None, market_cap=None))
    assert row is None
    assert excluded[0].multiple == "all" and "two of price" in excluded[0].reason
    row, excluded = peer_multiples(make_company("NOY", years=[]))
    assert row is None and "no fiscal-year figures" in excluded[0].reason


def test_company_with_negative_ebitda_and_losses_uses_ev_sales_only() -> None:
    company = make_company(latest={"ebitda": -10.0, "net_income": -5.0})
    comps = compare_with_peers(company, [company, *widget_peers()])
    assert comps.summary("ev_ebitda").implied_value_per_share is None
    assert "EBITDA -10 not positive" in (comps.summary("ev_ebitda").note or "")
    assert comps.summary("pe").implied_value_per_share is None
    assert comps.value_per_share == pytest.approx(19.0)  # EV/Sales alone, weight re-normalised to 1
    assert comps.summary("ev_sales").effective_weight == pytest.approx(1.0)


def test_heavy_debt_makes_ev_multiples_negative_and_excluded() -> None:
    company = make_company(latest={"total_debt": 3000.0})
    comps = compare_with_peers(company, [company, *widget_peers()])
    # EV/Sales: 2 * 1,100 - 3,000 + 100 = -700 -> -7 per share, not used
    assert comps.summary("ev_sales").implied_value_per_share == pytest.approx(-7.0)
    assert "not positive" in (comps.summary("ev_sales").note or "")
    # EV/EBITDA: 3,025 - 2,900 = 125 -> 1.25; P/E 30: (0.4 * 1.25 + 0.4 * 30) / 0.8
    assert comps.value_per_share == pytest.approx((0.4 * 1.25 + 0.4 * 30.0) / 0.8)


def test_no_peers_is_not_meaningful() -> None:
    company = make_company()
    comps = compare_with_peers(company, [company])
    assert comps.peers == [] and comps.value_per_share is None and not comps.meaningful
    assert any("no peers" in issue for issue in comps.issues)


def test_implied_value_and_combination_functions() -> None:
    # EV multiple: (10 * 50 - 100 + 20) / 10 = 42
    assert implied_value_per_share("ev_ebitda", 10.0, 50.0, 100.0, 20.0, 10.0) == pytest.approx(42.0)
    # P/E ignores the bridge: 15 * 20 / 10 = 30
    assert implied_value_per_share("pe", 15.0, 20.0, 100.0, 20.0, 10.0) == pytest.approx(30.0)
    assert implied_value_per_share("pe", 15.0, -20.0, 0.0, 0.0, 10.0) is None
    assert implied_value_per_share("ev_sales", None, 20.0, 0.0, 0.0, 10.0) is None
    value, weights = combine_implied_values(
        {"ev_ebitda": 10.0, "pe": None, "ev_sales": 40.0}, {"ev_ebitda": 0.4, "pe": 0.4, "ev_sales": 0.2}
    )
    # (0.4 * 10 + 0.2 * 40) / 0.6 = 20
    assert value == pytest.approx(20.0)
    assert weights == pytest.approx({"ev_ebitda": 2 / 3, "pe": 0.0, "ev_sales": 1 / 3})
    assert combine_implied_values({"ev_ebitda": -1.0}, {"ev_ebitda": 1.0})[0] is None


def test_custom_weights_and_the_scenario_multiple_shift() -> None:
    company = make_company()
    a = ValuationAssumptions(comps_weight_ev_ebitda=1.0, comps_weight_pe=0.0, comps_weight_ev_sales=0.0)
    comps = compare_with_peers(company, [company, *widget_peers()], a)
    assert comps.value_per_share == pytest.approx(27.25)
    # one more turn: (12 * 275 - 300) / 100 = 30
    assert shifted_comparables_value(comps, 1.0, a) == pytest.approx(30.0)
    assert shifted_comparables_value(comps, 0.0, a) == pytest.approx(27.25)
