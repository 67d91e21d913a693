"""Binding each figure to its quantity and checking its unit: a real value stated for the wrong quantity, or in a
unit its quantity never has, is wrong; table cells bind to their row label or column header."""

from __future__ import annotations

from typing import Any

import pytest

from equitune.evaluate.factcheck import FactCheckResult, FigureCheck, fact_check
from equitune.evaluate.scoring import ContextSource
from equitune.formatting import fmt_money, fmt_multiple, fmt_pct, fmt_price


@pytest.fixture(scope="module")
def aapl(source: ContextSource) -> Any:
    return source.get("AAPL", "base")


def _one(result: FactCheckResult, raw: str) -> FigureCheck:
    found = [f for f in result.figures if f.raw == raw]
    assert len(found) == 1, [(f.raw, f.label) for f in result.figures]
    return found[0]


def _good(check: FigureCheck) -> bool:
    return check.label in ("grounded", "derived_correct")


# ---------------------------------------------------------------------------------- units of named quantities


def test_a_dollar_amount_stated_as_a_cost_of_equity_is_wrong_though_the_amount_is_real(aapl: Any) -> None:
    income = fmt_money(aapl.company.latest.net_income)  # $93.7B: a real figure of the company
    result = fact_check(f"The cost of equity is estimated to be around {income}.", aapl)
    check = _one(result, income)
    assert check.label == "derived_wrong" and check.misbound
    assert check.quantity == "cost_of_equity"
    assert "percentage" in check.reason and "amount of money" in check.reason
    assert check.expected  # the quantity's values, for a reader
    assert result.misbound == 1


def test_a_percentage_stated_as_a_per_share_value_is_wrong(aapl: Any) -> None:
    upside = fmt_pct(aapl.analysis.target.upside, signed=True)  # a real engine output, as a DCF value
    check = _one(fact_check(f"The stock trades with a DCF value of {upside}.", aapl), upside)
    assert check.label == "derived_wrong" and check.misbound and check.quantity == "dcf_value"


def test_a_multiple_stated_as_a_margin_and_money_as_roic_are_wrong(aapl: Any) -> None:
    pe = fmt_multiple(aapl.facts.facts["estimates.reported.pe"].value)
    dps = fmt_price(aapl.company.latest.dividends_per_share)
    result = fact_check(f"- Operating margin: {pe}\n- ROIC: {dps}", aapl)
    assert _one(result, pe).misbound and _one(result, pe).quantity == "operating_margin"
    assert _one(result, dps).misbound and _one(result, dps).quantity == "roic"
    assert result.misbound == 2


def test_a_per_share_value_stated_as_a_yield_is_wrong_and_a_yield_the_engine_never_computed_is_unsupported(
    aapl: Any,
) -> None:
    dps = fmt_price(aapl.company.latest.dividends_per_share)
    misbound = _one(fact_check(f"Dividend yield of {dps}.", aapl), dps)
    assert misbound.misbound and misbound.quantity == "dividend_yield"
    # A yield in the right unit that happens to equal another fact is still untraceable: no yield in the data.
    margin = fmt_pct(aapl.analysis.ratios.operating_margin)
    check = _one(fact_check(f"Dividend yield of {margin}.", aapl), margin)
    assert check.label == "unsupported" and check.quantity == "dividend_yield" and not check.misbound
    assert "holds no value" in check.reason


def test_a_bare_number_is_read_in_its_quantitys_unit(aapl: Any) -> None:
    margin = aapl.analysis.ratios.gross_margin * 100
    right = f"{margin:.1f}"
    text = f"| Gross margin | {right} |\n|---|---|\n\nDividend yield = 78.62 and gross margin = 78.62."
    result = fact_check(text, aapl)
    assert _good(_one(result, right)) and _one(result, right).quantity == "gross_margin"
    wrong = [f for f in result.figures if f.raw == "78.62"]
    assert [f.label for f in wrong] == ["unsupported", "derived_wrong"]
    assert [f.quantity for f in wrong] == ["dividend_yield", "gross_margin"]


def test_right_figures_in_their_units_stay_right(aapl: Any) -> None:
    a = aapl.analysis
    pe = fmt_multiple(aapl.facts.facts["estimates.reported.pe"].value)
    text = (
        f"Cost of equity of {fmt_pct(a.wacc.cost_of_equity)}, ROIC of {fmt_pct(a.ratios.roic)}, "
        f"DCF value of {fmt_price(a.dcf.value_per_share)} and a P/E of {pe}."
    )
    result = fact_check(text, aapl)
    assert all(_good(f) for f in result.figures), [(f.raw, f.label, f.reason) for f in result.figures]
    assert result.misbound == 0 and result.unattributed == 0


def test_verbs_and_labels_are_not_read_as_misbound(aapl: Any) -> None:
    pe = fmt_multiple(aapl.facts.facts["estimates.reported.pe"].value)
    revenue = fmt_money(aapl.company.latest.revenue)
    result = fact_check(f"The stock trades at {pe} earnings; sales grew to {revenue}.", aapl)
    assert result.misbound == 0
    assert all(_good(f) for f in result.figures)


def test_a_signed_percentage_by_a_level_is_its_change(aapl: Any) -> None:
    growth = fmt_pct(aapl.analysis.ratios.revenue_growth, signed=True)
    right = _one(fact_check(f"- **Growth:** revenue {growth}.", aapl), growth)
    assert _good(right) and right.quantity == "revenue_growth"
    # "EBITDA 31.1%" in a list of margins is no growth claim: checked by value, never misbound.
    margin = fmt_pct(aapl.analysis.ratios.ebitda_margin)
    listed = _one(fact_check(f"- Margins: gross 46.2%, EBITDA {margin}.", aapl), margin)
    assert _good(listed) and not listed.misbound


def test_basis_points_years_and_dates_bind_to_nothing(aapl: Any) -> None:
    result = fact_check("Risk-free rate +100 bp to 5.5%; revenue FY2024 as of 2024-12-31.", aapl)
    for raw in ("+100 bp", "FY2024", "2024-12-31"):
        assert _one(result, raw).quantity is None and not _one(result, raw).misbound


# ------------------------------------------------------------------------------------------------ tables


def test_a_table_cell_binds_to_its_column_header(aapl: Any) -> None:
    price = fmt_price(aapl.analysis.market.price)
    revenue = fmt_money(aapl.company.latest.revenue)
    text = f"| Date | Revenue | Price |\n| --- | --- | --- |\n| 2024-12-31 | {price} | {revenue} |\n"
    result = fact_check(text, aapl)
    under_revenue, under_price = _one(result, price), _one(result, revenue)
    assert under_revenue.quantity == "revenue" and under_revenue.label == "unsupported"
    assert under_price.quantity == "price" and under_price.label == "unsupported"
    assert (
        fact_check(
            f"| Date | Price | Revenue |\n| --- | --- | --- |\n| 2024-12-31 | {price} | {revenue} |\n", aapl
        ).counts["unsupported"]
        == 0
    )


def test_every_cell_of_a_row_binds_to_its_label(aapl: Any) -> None:
    latest, prior = aapl.company.latest, aapl.company.prior
    now, then = fmt_money(latest.revenue), fmt_money(prior.revenue)
    text = f"| | FY2024 | FY2023 |\n|---|---:|---:|\n| Revenue | {now} | {then} |\n"
    result = fact_check(text, aapl)
    assert [(f.quantity, f.label) for f in result.figures if f.kind == "currency"] == [
        ("revenue", "grounded"),
        ("revenue", "grounded"),
    ]
    capex = fmt_money(prior.capex)  # a real figure, in the revenue row
    wrong = fact_check(f"| | FY2024 | FY2023 |\n|---|---:|---:|\n| Revenue | {now} | {capex} |\n", aapl)
    assert _one(wrong, capex).quantity == "revenue" and _one(wrong, capex).label == "unsupported"


def test_a_cells_later_figures_are_bound_by_their_own_words(aapl: Any) -> None:
    t = aapl.analysis.target
    target = fmt_price(t.price_target)
    row = f"| 12-month price target | {target} (50% DCF + 50% comparables) |"
    text = f"| Engine figure | Value |\n| --- | --- |\n{row}\n"
    result = fact_check(text, aapl)
    assert _one(result, target).quantity == "price_target" and _good(_one(result, target))
    assert result.misbound == 0  # the blend's weights are not target values


def test_unattributed_figures_are_counted(aapl: Any) -> None:
    revenue = fmt_money(aapl.company.latest.revenue)
    result = fact_check(f"We note {revenue} and FY2024.", aapl)
    assert result.unattributed == 1
    assert result.to_dict()["unattributed"] == 1 and result.to_dict()["misbound"] == 0
