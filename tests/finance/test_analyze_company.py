"""analyze_company end to end on Testco: the pieces agree, the fallbacks are flagged, the JSON is finite."""

from __future__ import annotations

import json
import math

import pytest
from finance_factories import bank_year, make_company, widget_peers
from pydantic import ValidationError

from equitune.errors import FinanceError
from equitune.finance import (
    CompanyAnalysis,
    FinancialRatios,
    ValuationAssumptions,
    analyze_company,
    compute_ratios,
    compute_wacc,
    rating_for,
)
from equitune.finance.analysis import _non_finite


def test_testco_analysis_by_hand() -> None:
    company = make_company()
    result = analyze_company(company, [company, *widget_peers()])
    assert result.ratios == compute_ratios(company)
    assert result.wacc == compute_wacc(company)
    assert result.wacc.wacc == pytest.approx(0.0846444, abs=1e-7)  # test_wacc.py: Blume beta, 4.33% ERP
    assert result.comparables.value_per_share == pytest.approx(26.70)
    assert result.dcf is not None and result.dcf_error is None
    # the peers' median EV/EBITDA is the exit multiple
    assert result.dcf.inputs.exit_multiple == pytest.approx(11.0)
    assert result.dcf.inputs.wacc == pytest.approx(0.0846444, abs=1e-7)
    assert result.dcf.sensitivity is not None
    assert result.dcf.sensitivity.values[2][2] == pytest.approx(result.dcf.value_per_share)
    expected = 0.5 * result.dcf.value_per_share + 0.5 * 26.70
    assert result.price_target == pytest.approx(expected)
    assert result.upside == pytest.approx(expected / 20.0 - 1)
    assert result.rating == rating_for(expected / 20.0 - 1, ValuationAssumptions())
    assert result.target.method == "blend"
    assert [s.name for s in result.scenarios] == ["bear", "base", "bull"]
    assert result.scenarios[1].value_per_share == pytest.approx(result.price_target)
    assert result.assumptions == ValuationAssumptions()
    assert result.warnings == []


def test_json_is_finite_and_round_trips() -> None:
    company = make_company()
    result = analyze_company(company, [company, *widget_peers()])
    data = result.model_dump(mode="json")
    text = json.dumps(data, allow_nan=False)  # raises on NaN or infinity
    assert {"price_target", "upside", "rating", "dcf", "comparables", "assumptions"} <= set(data)
    assert data["assumptions"]["terminal_growth"] == 0.025
    assert CompanyAnalysis.model_validate_json(text) == result


def test_the_result_rejects_non_finite_numbers() -> None:
    good = compute_ratios(make_company()).model_dump()
    with pytest.raises(ValidationError, match="finite"):
        FinancialRatios.model_validate({**good, "roe": math.nan})
    with pytest.raises(ValidationError, match="finite"):
        FinancialRatios.model_validate({**good, "net_debt": math.inf})
    assert _non_finite({"a": [1.0, {"b": math.nan}], "c": math.inf}, "X") == ["X.a[1].b", "X.c"]


def test_headline_fields_must_match_the_target() -> None:
    company = make_company()
    data = analyze_company(company, [company, *widget_peers()]).model_dump(mode="json")
    data["rating"] = "Buy" if data["rating"] != "Buy" else "Sell"
    with pytest.raises(ValidationError, match="must equal those of target"):
        CompanyAnalysis.model_validate(data)


def test_sector_fallback_is_warned() -> None:
    company = make_company()
    result = analyze_company(company, [company, *widget_peers()[1:]])
    assert result.comparables.basis == "sector"
    assert any("peers drawn from the Industrials sector" in w for w in result.warnings)


def test_wacc_below_growth_falls_back_to_comparables() -> None:
    company = make_company(beta=0.0)
    # Ke = 4.5% (raw beta 0); WACC = 0.8333 * 0.045 + 0.1667 * 0.0375 = 0.04375 < 6% terminal growth
    a = ValuationAssumptions(terminal_growth=0.06, beta_adjustment="none")
    result = analyze_company(company, [company, *widget_peers()], a)
    assert result.wacc.wacc == pytest.approx(0.04375)
    assert result.dcf is None
    assert result.dcf_error is not None and "must exceed terminal growth" in result.dcf_error
    assert result.target.method == "comps_only"
    assert result.price_target == pytest.approx(26.70)
    assert result.upside == pytest.approx(26.70 / 20 - 1)
    assert result.rating == "Buy"
    assert all(s.method == "comps_only" for s in result.scenarios)
    assert any("DCF could not run" in w for w in result.warnings)


def test_negative_fcf_company_uses_comparables_and_says_so() -> None:
    burn = {"free_cash_flow": -100.0}
    company = make_company(latest=burn, prior=burn)
    result = analyze_company(company, [company, *widget_peers()])
    assert result.dcf is not None and not result.dcf.meaningful
    assert result.dcf.value_per_share < 0  # reported, not hidden
    assert result.target.method == "comps_only"
    assert any("DCF value not meaningful" in w for w in result.warnings)


def test_records_that_cannot_be_valued_raise() -> None:
    with pytest.raises(FinanceError, match="no fiscal-year figures"):
        analyze_company(make_company(years=[]), [])
    with pytest.raises(FinanceError, match="two of price"):
        analyze_company(make_company(price=None, market_cap=None), [])
    with pytest.raises(FinanceError, match="FY2024.revenue is inf"):
        analyze_company(make_company(latest={"revenue": math.inf}), [])


def test_caveats_for_partial_records_financials_and_derived_figures() -> None:
    company = make_company(
        sector="Financials",
        status="partial",
        beta=None,
        market_cap=None,
        latest={"gross_profit": None},
        notes=["gross profit not reported by banks"],
    )
    result = analyze_company(company, [company])
    text = " | ".join(result.warnings)
    assert "partial record; missing: market_cap, beta, FY2024.gross_profit" in text
    assert result.method == "dcf"  # a Financials company that is not a lender (sub-industry 'Widgets')
    assert "market cap not reported; derived" in text
    assert "default beta 1.00" in text
    assert result.data_notes == ["gross profit not reported by banks"]
    assert result.dcf is not None and not result.dcf.inputs.interest_added_back


def test_a_bank_is_valued_on_book_value_against_roe_and_says_so() -> None:
    # Invented bank: common equity 1,000, equity 1,000 both years, net income 150 -> ROE 15%; 100 shares, so
    # BVPS 10.00; beta 1.0 -> ke = 4.5% + 1.0 x 4.33% = 8.83%; g = 2.5%;
    # justified P/B = (15% - 2.5%) / (8.83% - 2.5%) = 1.9747 -> value 19.75 per share.
    year = bank_year(eps_diluted=1.5)
    bank = make_company(
        sector="Financials",
        sub_industry="Diversified Banks",
        beta=1.0,
        diluted_shares=100.0,
        price=15.0,
        market_cap=1500.0,
        latest=year,
        prior=year,
    )
    result = analyze_company(bank, [bank])
    assert result.method == "excess_return" and result.dcf is None and "not used" in (result.dcf_error or "")
    assert result.excess_return is not None
    assert result.excess_return.roe == pytest.approx(0.15)
    ke = 0.045 + 0.0433
    assert result.excess_return.justified_pb == pytest.approx((0.15 - 0.025) / (ke - 0.025))
    assert result.excess_return.value_per_share == pytest.approx(10.0 * (0.15 - 0.025) / (ke - 0.025))
    assert result.target.intrinsic_label == "excess-return (justified P/B)"
    assert any("not a DCF" in w for w in result.warnings)
    assert result.implied is not None and "needs a sustained ROE of" in result.implied
    # ROE needed by the price: g + P/B x (ke - g) = 2.5% + 1.5 x 6.33% = 12.0%
    assert f"{0.025 + 1.5 * (ke - 0.025):.1%}" in result.implied


def test_a_target_far_from_the_price_is_warned() -> None:
    company = make_company()
    near = analyze_company(company, [company, *widget_peers()])
    assert not any("x the share price" in w for w in near.warnings)
    cheap = make_company(price=5.0, market_cap=None)  # market cap 5 * 100 = 500
    far = analyze_company(cheap, [cheap, *widget_peers()])
    assert far.price_target is not None and far.price_target / 5.0 > 2
    assert any(f"{far.price_target / 5.0:.2f}x the share price" in w for w in far.warnings)
