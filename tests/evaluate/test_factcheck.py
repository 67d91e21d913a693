"""The numeric fact-check: labels, named quantities, consistency checks, coverage, on real engine contexts."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from equitune.data.families import FAMILY_IDS
from equitune.evaluate.factcheck import (
    KEY_FACTS,
    LABELS,
    QUANTITIES,
    FactCheckResult,
    FigureCheck,
    fact_check,
    is_reported,
    stated_ratings,
)
from equitune.evaluate.scoring import ContextSource
from equitune.finance import ValuationAssumptions
from equitune.formatting import fmt_money, fmt_pct, fmt_price


def _only(result: FactCheckResult, raw: str) -> FigureCheck:
    found = [f for f in result.figures if f.raw == raw]
    assert len(found) == 1, [f.raw for f in result.figures]
    return found[0]


def _status(result: FactCheckResult, name: str) -> str:
    return next(c.status for c in result.consistency if c.name == name)


@pytest.fixture(scope="module")
def aapl(source: ContextSource) -> Any:
    return source.get("AAPL", "base")


@pytest.fixture(scope="module")
def figures(aapl: Any) -> dict[str, str]:
    """AAPL's headline figures written the way reports write them."""
    a = aapl.analysis
    return {
        "price": fmt_price(a.market.price),
        "target": fmt_price(a.target.price_target),
        "upside": fmt_pct(a.target.upside, signed=True),
        "wacc": fmt_pct(a.wacc.wacc),
        "growth": fmt_pct(a.dcf.inputs.terminal_growth),
        "margin": fmt_pct(a.ratios.operating_margin),
        "revenue": fmt_money(aapl.company.latest.revenue),
    }


# ------------------------------------------------------------------------------------ reference responses


def test_reference_responses_are_fully_supported(references: list[Any]) -> None:
    assert {r.family for r in references} == set(FAMILY_IDS)
    for ref in references:
        result = fact_check(ref.response, ref.context, family=ref.family)
        where = f"{ref.family} {ref.context.ticker} {ref.context.condition.name}"
        assert len(result.figures) >= 20, where
        bad = [(f.raw, f.label, f.quantity, f.expected) for f in result.figures if f.label not in LABELS[:2]]
        assert bad == [], where
        assert result.hallucination_rate == 0.0 and result.derived_error_rate == 0.0, where
        assert result.failed_consistency() == [], where
        assert result.key_fact_coverage == 1.0, (where, [k for k in result.key_facts if not k.covered])


def test_reference_consistency_checks_run_where_the_family_states_the_numbers(references: list[Any]) -> None:
    for ref in references:
        result = fact_check(ref.response, ref.context, family=ref.family)
        statuses = {c.name: c.status for c in result.consistency}
        if ref.family in ("executive_summary", "valuation", "investment_thesis", "risk_assessment"):
            assert statuses["upside_matches_target_and_price"] == "pass", ref.family
            assert statuses["rating_matches_bands"] == "pass", ref.family
            assert result.stated["rating"] == ref.context.rating
        if ref.family == "valuation" and ref.context.analysis.method == "dcf":
            assert statuses["wacc_above_terminal_growth"] == "pass"
        elif ref.family == "valuation":  # a sector model states no WACC against a terminal growth
            assert statuses["wacc_above_terminal_growth"] in ("pass", "skip")


def test_both_labels_of_supported_figures_occur(aapl: Any, figures: dict[str, str]) -> None:
    text = f"FY2024 revenue was {figures['revenue']}; operating margin {figures['margin']}; WACC of {figures['wacc']}."
    result = fact_check(text, aapl)
    assert _only(result, figures["revenue"]).label == "grounded"
    assert _only(result, figures["margin"]).label == "derived_correct"
    assert _only(result, figures["wacc"]).label == "derived_correct"
    year = _only(result, "FY2024")
    assert year.label == "grounded" and year.kind == "year"
    assert "company.FY2024.fiscal_year" in year.facts


def test_dates_and_fiscal_years_in_the_data_are_grounded_others_not(aapl: Any) -> None:
    day = aapl.company.price_date.isoformat()
    last = aapl.analysis.dcf.projection[-1].fiscal_year
    result = fact_check(f"Price as of {day}, FY2024 and FY2023, fading by FY{last}E; nothing in FY1999.", aapl)
    assert _only(result, day).label == "grounded"
    assert _only(result, "FY2023").label == "grounded"
    assert _only(result, f"FY{last}E").label == "grounded"  # a projection year of the engine's DCF
    assert _only(result, "FY1999").label == "unsupported"


# ------------------------------------------------------------------------------------ named quantities


@pytest.mark.parametrize(
    ("template", "quantity"),
    [
        ("Our price target is $999.99.", "price_target"),
        ("That gives an upside of 41.7% to the target.", "upside"),
        ("We discount at a WACC of 19.1%.", "wacc"),
        ("**Operating margin:** 71.3%", "operating_margin"),
        ("| EV/EBITDA | 97.1x |", "ev_ebitda"),
        ("The DCF value per share is $1.23.", "dcf_value"),
        ("Terminal growth of 7.7% is assumed.", "terminal_growth"),
        ("ROIC stood at 88.8%.", "roic"),
    ],
)
def test_a_named_derived_quantity_with_a_wrong_value_is_derived_wrong(aapl: Any, template: str, quantity: str) -> None:
    result = fact_check(template, aapl)
    wrong = [f for f in result.figures if f.label == "derived_wrong"]
    assert len(wrong) == 1, result.figures
    assert wrong[0].quantity == quantity
    assert wrong[0].expected, "the engine's values are listed"
    assert quantity.split("_")[0].lower() in wrong[0].reason.lower() or wrong[0].keyword


def test_derived_wrong_lists_the_engine_value(aapl: Any, figures: dict[str, str]) -> None:
    result = fact_check("Price target $310.00.", aapl)
    check = _only(result, "$310.00")
    assert check.label == "derived_wrong"
    assert check.expected[0] == figures["target"]
    assert result.derived_error_rate == 1.0


def test_the_same_quantities_with_the_right_values_are_correct(aapl: Any, figures: dict[str, str]) -> None:
    text = (
        f"Our price target is {figures['target']}, an upside of {figures['upside']}; WACC of {figures['wacc']}, "
        f"terminal growth of {figures['growth']}, operating margin {figures['margin']}."
    )
    result = fact_check(text, aapl)
    assert [f.label for f in result.figures] == ["derived_correct"] * 5
    assert [f.quantity for f in result.figures] == [
        "price_target",
        "upside",
        "wacc",
        "terminal_growth",
        "operating_margin",
    ]


def test_a_named_reported_figure_that_contradicts_the_data_is_unsupported(aapl: Any) -> None:
    result = fact_check("Revenue of $987.6B, and then $12.3T of something.", aapl)
    named = _only(result, "$987.6B")
    assert named.label == "unsupported" and named.quantity == "revenue"
    assert named.expected and "revenue" in named.reason
    loose = _only(result, "$12.3T")
    assert loose.label == "unsupported" and loose.quantity is None
    assert result.hallucination_rate == 1.0


def test_a_keyword_names_a_figure_only_across_linking_words(aapl: Any, figures: dict[str, str]) -> None:
    wacc = aapl.analysis.wacc.wacc
    # "WACC and 1.5% terminal growth": the WACC keyword does not reach past "and"; terminal growth names it after.
    result = fact_check(f"At a {fmt_pct(wacc)} WACC and 1.5% terminal growth the value is lower.", aapl)
    assert _only(result, fmt_pct(wacc)).quantity == "wacc"
    assert _only(result, "1.5%").quantity == "terminal_growth"
    # Prose between keyword and figure: no attribution, the figure is checked by value alone.
    loose = fact_check("The WACC, which we regard as conservative at about 41.2%, ...", aapl)
    assert _only(loose, "41.2%").quantity is None
    assert _only(loose, "41.2%").label == "unsupported"


def test_a_signed_percentage_in_brackets_after_a_target_is_its_upside(aapl: Any, figures: dict[str, str]) -> None:
    right = fact_check(f"price target {figures['target']} ({figures['upside']})", aapl)
    assert _only(right, figures["upside"]).quantity == "upside"
    wrong = fact_check(f"price target {figures['target']} (+44.4%)", aapl)
    assert _only(wrong, "+44.4%").label == "derived_wrong"
    blend = fact_check(f"price target {figures['target']} (50% DCF + 50% comparables)", aapl)
    assert [f.quantity for f in blend.figures if f.raw == "50%"] == [None, None]


def test_downside_is_upside_negated_and_the_sign_of_upside_counts(aapl: Any) -> None:
    upside = aapl.analysis.target.upside
    assert upside < 0
    magnitude = fmt_pct(abs(upside))
    assert _only(fact_check(f"a downside of {magnitude}", aapl), magnitude).label == "derived_correct"
    assert _only(fact_check(f"an upside of {magnitude}", aapl), magnitude).label == "derived_wrong"


def test_a_company_name_that_is_a_keyword_does_not_block_the_keyword_after(source: ContextSource) -> None:
    tgt = source.get("TGT", "base")
    target = fmt_price(tgt.analysis.target.price_target)
    result = fact_check(f"We rate Target Corporation a Buy with a {target} price target.", tgt)
    assert _only(result, target).quantity == "price_target"


# ------------------------------------------------------------------------------------ consistency


def test_changed_target_fails_the_upside_check_with_the_numbers(aapl: Any, figures: dict[str, str]) -> None:
    text = f"Price target {figures['target']}: upside of {figures['upside']} from the {figures['price']} share price."
    ok = fact_check(text, aapl)
    assert _status(ok, "upside_matches_target_and_price") == "pass"
    changed = fact_check(text.replace(figures["target"], "$310.00"), aapl)
    check = next(c for c in changed.consistency if c.name == "upside_matches_target_and_price")
    assert check.status == "fail"
    assert check.values["stated_target"] == "$310.00" and check.values["stated_upside"] == figures["upside"]
    implied = check.values["implied_upside"]
    assert isinstance(implied, float)
    assert implied == pytest.approx(310.0 / aapl.analysis.market.price - 1, abs=1e-6)


def test_upside_check_allows_the_rounding_of_target_and_price(aapl: Any) -> None:
    # $110 / $100 - 1 = +10.0%; written to whole dollars, +10.4% is still within the rounding of both.
    text = "Price target $110: upside of +10.4% from the $100 share price."
    assert _status(fact_check(text, aapl), "upside_matches_target_and_price") == "pass"
    text = "Price target $110: upside of +11.5% from the $100 share price."
    assert _status(fact_check(text, aapl), "upside_matches_target_and_price") == "fail"


def test_rating_must_follow_the_configured_bands(aapl: Any) -> None:
    assert _status(fact_check("Rating: BUY. Upside of +20.0%.", aapl), "rating_matches_bands") == "pass"
    result = fact_check("Rating: SELL. Upside of +20.0%.", aapl)
    check = next(c for c in result.consistency if c.name == "rating_matches_bands")
    assert check.status == "fail" and check.values["band_rating"] == "Buy"
    # Other bands: Buy needs +25%, so +20% is a Hold.
    bands = ValuationAssumptions(buy_threshold=0.25, sell_threshold=0.05)
    assert _status(fact_check("Rating: HOLD. Upside of +20.0%.", aapl, bands=bands), "rating_matches_bands") == "pass"
    assert _status(fact_check("Rating: BUY. Upside of +20.0%.", aapl, bands=bands), "rating_matches_bands") == "fail"


def test_rating_check_accepts_either_rating_within_the_rounding_of_the_upside(aapl: Any) -> None:
    # +15% written to whole points may be 14.6%: Hold or Buy.
    assert _status(fact_check("Rating: HOLD. Upside of +15%.", aapl), "rating_matches_bands") == "pass"
    assert _status(fact_check("Rating: BUY. Upside of +15%.", aapl), "rating_matches_bands") == "pass"
    assert _status(fact_check("Rating: SELL. Upside of +15%.", aapl), "rating_matches_bands") == "fail"


def test_wacc_must_exceed_terminal_growth(aapl: Any) -> None:
    assert (
        _status(fact_check("WACC of 9.0% and terminal growth of 2.5%.", aapl), "wacc_above_terminal_growth") == "pass"
    )
    assert (
        _status(fact_check("WACC of 2.0% and terminal growth of 2.5%.", aapl), "wacc_above_terminal_growth") == "fail"
    )
    assert _status(fact_check("No rates here.", aapl), "wacc_above_terminal_growth") == "skip"


def test_checks_without_stated_numbers_are_skipped_not_failed(aapl: Any) -> None:
    result = fact_check("", aapl, family="valuation")
    assert result.figures == []
    assert {c.status for c in result.consistency} == {"skip"}
    assert result.hallucination_rate is None and result.derived_error_rate is None
    assert result.key_fact_coverage == 0.0


# ------------------------------------------------------------------------------------ ratings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- **Rating:** SELL", ["Sell"]),
        ("We rate the shares a Buy.", ["Buy"]),
        ("It carries a Hold rating.", ["Hold"]),
        ("We rate AAPL **HOLD**: upside sits inside the Hold band.", ["Hold"]),
        ("(Buy at or above +15.0% upside, Sell below +0.0%)", []),
        ("the rating moves from SELL to HOLD.", ["Hold"]),
        ("the rating is BUY (base case SELL).", ["Buy"]),
        ("- **Rating:** HOLD, against BUY in the base case.", ["Hold"]),
        ("We upgrade to Outperform.", []),
        ("Our rating: Outperform.", ["Buy"]),
        ("not a recommendation to buy or sell", []),
        ("Delivery on them is what would move us from Hold to Buy:", []),
    ],
)
def test_stated_ratings(text: str, expected: list[str]) -> None:
    assert stated_ratings(text) == expected


# ------------------------------------------------------------------------------------ other inputs


def test_figures_given_by_the_prompt_count_as_grounded(aapl: Any) -> None:
    text = "Keep it to 777 words; revenue of $987.6B is not in the data."
    result = fact_check(text, aapl, prompt="Write 777 words.")
    assert _only(result, "777").label == "grounded"
    assert _only(result, "777").reason == "given in the prompt"
    assert _only(result, "$987.6B").label == "unsupported"  # named revenue: the prompt does not rescue it
    assert _only(fact_check("Keep it to 777 words.", aapl), "777").label == "unsupported"


def test_a_bare_fact_sheet_works_with_the_sheet_price_and_target(aapl: Any, figures: dict[str, str]) -> None:
    text = f"Price target {figures['target']}, upside of {figures['upside']} from {figures['price']} share price."
    result = fact_check(text, aapl.facts, family="executive_summary")
    assert result.engine["price_target"] == pytest.approx(aapl.analysis.target.price_target)
    assert result.engine["rating"] is None  # a bare sheet carries no rating
    assert _status(result, "upside_matches_target_and_price") == "pass"
    assert [f.label for f in result.figures] == ["derived_correct", "derived_correct", "grounded"]


def test_rejects_anything_but_a_sheet_or_a_context() -> None:
    with pytest.raises(TypeError, match="FactSheet or an ExampleContext"):
        fact_check("text", object())  # type: ignore[arg-type]


def test_result_is_json_serialisable(references: list[Any]) -> None:
    ref = references[2]
    data = json.loads(json.dumps(fact_check(ref.response, ref.context, family=ref.family).to_dict()))
    assert set(data) >= {"counts", "hallucination_rate", "derived_error_rate", "key_fact_coverage", "checks"}
    assert data["figures"] == len(data["checks"]) == sum(data["counts"].values())


# ------------------------------------------------------------------------------------ the tables


def test_every_quantity_field_exists_in_the_engine_facts(source: ContextSource) -> None:
    # A misspelt field in QUANTITIES would silently never match; every field must name facts of some context.
    names = set()
    for ticker, condition in (
        ("AAPL", "recession"),
        ("ED", "base"),
        ("SBAC", "base"),
        ("LMT", "risk_off"),
        ("JPM", "base"),
        ("LLY", "base"),
    ):
        names.update(re.sub(r"\[\d+\]", "", n) for n in source.get(ticker, condition).facts.facts)
    for quantity in QUANTITIES:
        for spec in quantity.fields:
            field, _, part = spec.partition("@")
            assert any(n.rsplit(".", 1)[-1] == field and part in n for n in names), (quantity.name, spec)


def test_every_key_fact_resolves_in_a_full_context(source: ContextSource) -> None:
    from equitune.evaluate.factcheck import KEY_FACT_SOURCES

    context = source.get("AAPL", "base")
    for family, keys in KEY_FACTS.items():
        assert family in FAMILY_IDS
        for key in keys:
            if key != "rating":
                assert KEY_FACT_SOURCES[key].format(fy=2024) in context.facts, key


def test_reported_and_engine_facts_are_told_apart() -> None:
    assert is_reported("company.FY2024.revenue") and is_reported("peer.MSFT.FY2024.revenue")
    assert not is_reported("peer.MSFT.ratios.roic") and not is_reported("analysis.wacc.wacc")
