"""The rubric: weights, tiers, per-family applicability, and scores of right, wrong and empty reports."""

from __future__ import annotations

import json
import re
from itertools import product
from typing import Any

import pytest
from pydantic import ValidationError

from equitune.data.families import (
    FAMILY_IDS,
    financial_analysis,
    industry_analysis,
    investment_thesis,
    risk_assessment,
    valuation,
)
from equitune.evaluate.rubric import (
    APPLIES_TO,
    CATEGORIES,
    CHECKS,
    DEFAULT_WEIGHTS,
    SECTIONS,
    RubricWeights,
    score_report,
    sections_found,
    tier_for,
)
from equitune.formatting import fmt_price

STUFFED = """# Equity Research Report: Strong Buy
## Rating and Price Target
- Buy rating with strong upside; our price target sits well above the current price; catalysts ahead.
## Valuation
- DCF, WACC, terminal value, terminal growth, CAPM, Gordon growth, EV/EBITDA, P/E, comparables, peer median.
- Sensitivity, bull case, bear case, scenarios, blend of DCF and comparables, margins, ROIC, leverage.
## Risks
- Regulatory risk, leverage, interest coverage, downside, bear case, stress, competition, AI, cloud, chips.
## Catalysts
- Earnings momentum, margin expansion, capital returns, buybacks.

*Not investment advice.*"""


# ------------------------------------------------------------------------------------ weights and tiers


def test_default_weights_are_the_original_design() -> None:
    assert DEFAULT_WEIGHTS.as_dict() == {
        "financial_accuracy": 0.25,
        "investment_reasoning": 0.30,
        "technical_depth": 0.25,
        "structure_quality": 0.20,
    }


def test_weights_must_sum_to_one_and_name_known_categories() -> None:
    with pytest.raises(ValidationError, match="sum to 1"):
        RubricWeights(financial_accuracy=0.5)
    with pytest.raises(ValidationError, match="extra"):
        RubricWeights.model_validate({"financial_accuracy": 0.25, "accuracy": 0.1})
    custom = RubricWeights.model_validate(
        {"financial_accuracy": 0.7, "investment_reasoning": 0.1, "technical_depth": 0.1, "structure_quality": 0.1}
    )
    assert sum(custom.as_dict().values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("score", "tier"),
    [(100, "Excellent"), (80, "Excellent"), (79.99, "Good"), (65, "Good"), (64.9, "Acceptable"), (50, "Acceptable"),
     (49.99, "Poor"), (0, "Poor")],
)  # fmt: skip
def test_tiers(score: float, tier: str) -> None:
    assert tier_for(score).name == tier


def test_weights_change_the_total(references: list[Any]) -> None:
    ref = next(r for r in references if r.family == "valuation")
    text = ref.response.replace("\n## ", "\n")  # strip the section headers: structure drops, accuracy stays
    equal = score_report(text, "valuation", ref.context)
    heavy = score_report(
        text,
        "valuation",
        ref.context,
        RubricWeights(financial_accuracy=0.1, investment_reasoning=0.1, technical_depth=0.1, structure_quality=0.7),
    )
    structure = equal.category("structure_quality").score
    assert structure < 100
    assert heavy.score < equal.score
    assert heavy.score == pytest.approx(
        sum(w * equal.category(c).score for c, w in zip(CATEGORIES, (0.1, 0.1, 0.1, 0.7), strict=True))
    )


# ------------------------------------------------------------------------------------ right reports


def test_reference_responses_score_excellent_with_every_figure_right(references: list[Any]) -> None:
    assert {r.family for r in references} == set(FAMILY_IDS)
    for ref in references:
        result = score_report(ref.response, ref.family, ref.context, prompt=ref.prompt)
        where = f"{ref.family} {ref.context.ticker} {ref.context.condition.name}"
        assert result.score >= 80, (where, [(c.name, c.reason) for c in result.failed()])
        assert result.tier == "Excellent"
        assert result.fact_check.count("derived_wrong") == 0 and result.fact_check.count("unsupported") == 0
        assert result.caps == []


def test_every_check_says_what_it_found(references: list[Any]) -> None:
    for ref in references[:6]:
        result = score_report(ref.response, ref.family, ref.context)
        for check in result.checks:
            assert check.reason and 0 <= check.earned <= check.points
        listed = {c.name for c in result.checks} | {s.name for c in result.categories for s in c.not_applicable}
        assert listed == {spec.name for spec in CHECKS}


def test_applicability_follows_the_task(references: list[Any]) -> None:
    scores = {r.family: score_report(r.response, r.family, r.context) for r in references[:6]}

    def skipped(family: str) -> set[str]:
        return {s.name for c in scores[family].categories for s in c.not_applicable}

    assert {"explicit_rating", "target_with_upside", "dcf"} <= skipped("industry_analysis")
    assert {"explicit_rating", "dcf", "comparables"} <= skipped("financial_analysis")
    assert {"dcf", "comparables", "risk_ratings"} <= skipped("investment_thesis")
    assert "dcf" not in skipped("risk_assessment") and "sector_knowledge" not in skipped("risk_assessment")
    assert {"catalysts", "value_creation"} <= skipped("valuation")
    for name, families in APPLIES_TO.items():
        assert families <= set(FAMILY_IDS), name


def test_checks_the_data_cannot_support_do_not_apply(references: list[Any]) -> None:
    from equitune.data.facts import FactSheet, add_company

    # Only the company's reported figures: no engine outputs, so no target, rating, DCF or WACC to check.
    ref = next(r for r in references if r.family == "valuation")
    sheet = FactSheet(ref.context.ticker)
    add_company(sheet, ref.context.company)
    result = score_report(ref.response, "valuation", sheet)
    reasons = {s.name: s.reason for c in result.categories for s in c.not_applicable}
    assert "no price target" in reasons["target_with_upside"]
    assert "no DCF" in reasons["dcf"] and "no WACC" in reasons["wacc"]
    assert "rating" in reasons["rating_matches_engine"]
    risk = next(r for r in references if r.family == "risk_assessment")
    bare = score_report(risk.response, "risk_assessment", risk.context.facts)  # a sheet: no sector known
    assert {s.name: s.reason for c in bare.categories for s in c.not_applicable}["sector_knowledge"] == (
        "the company's sector is not known"
    )
    # Every engine figure of the report is now unsupported, so the report is Poor.
    assert result.fact_check.count("unsupported") > 50 and result.tier == "Poor"


# ------------------------------------------------------------------------------------ wrong reports


def test_changed_price_target_is_derived_wrong_inconsistent_and_scores_lower(references: list[Any]) -> None:
    for ref in [r for r in references if r.family in ("executive_summary", "valuation", "investment_thesis")]:
        target = fmt_price(ref.context.analysis.target.price_target)
        changed = ref.response.replace(target, fmt_price(ref.context.analysis.target.price_target * 1.3))
        assert changed != ref.response
        right = score_report(ref.response, ref.family, ref.context)
        wrong = score_report(changed, ref.family, ref.context)
        fc = wrong.fact_check
        assert fc.count("derived_wrong") >= 1, ref.family
        assert [c.name for c in fc.failed_consistency()] == ["upside_matches_target_and_price"]
        assert wrong.score < right.score and wrong.score <= 79
        assert "contradicts_data" in [c.name for c in wrong.caps]
        failed = {c.name for c in wrong.failed()}
        assert {"derived_figures_correct", "internal_consistency", "target_with_upside"} <= failed


def test_an_invented_figure_is_unsupported_and_costs_points(references: list[Any]) -> None:
    ref = next(r for r in references if r.family == "financial_analysis")
    lines = ref.response.split("\n")
    lines.insert(4, "Management also expects an order backlog of $987.6B by the end of next year.")
    result = score_report("\n".join(lines), ref.family, ref.context)
    unsupported = [f for f in result.fact_check.figures if f.label == "unsupported"]
    assert [f.raw for f in unsupported] == ["$987.6B"]
    assert result.score < score_report(ref.response, ref.family, ref.context).score
    assert "no_unsupported_figures" in {c.name for c in result.failed()}


def test_all_percentages_off_by_two_points_is_poor(references: list[Any]) -> None:
    for ref in references[:6]:
        shifted = re.sub(r"(\d+\.\d)%", lambda m: f"{float(m.group(1)) + 2.0:.1f}%", ref.response)
        result = score_report(shifted, ref.family, ref.context)
        assert result.score < 65, (ref.family, result.score)
        assert result.fact_check.count("derived_wrong") > 0


def test_another_companys_report_scores_poor(references: list[Any]) -> None:
    by_context = {}
    for ref in references:
        by_context.setdefault(ref.family, []).append(ref)
    for family, refs in by_context.items():
        first, other = refs[0], next(r for r in refs if r.context.ticker != refs[0].context.ticker)
        result = score_report(other.response, family, first.context)
        assert result.score < 50, (family, result.score)


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_keyword_stuffed_text_without_figures_is_poor(source: Any, family: str) -> None:
    result = score_report(STUFFED, family, source.get("AAPL", "base"))
    assert result.tier == "Poor" and result.score < 50
    assert result.fact_check.figures == []
    assert result.category("financial_accuracy").score <= 10
    assert {"figures_supported", "derived_figures_correct"} <= {c.name for c in result.failed()}


def test_empty_report_scores_zero_with_every_check_failed(source: Any) -> None:
    result = score_report("", "valuation", source.get("AAPL", "base"))
    assert result.score == 0.0 and result.tier == "Poor"
    assert result.checks and all(not c.passed and c.earned == 0 and c.reason == "empty report" for c in result.checks)
    assert {c.name for c in result.failed()} >= {"figures_supported", "explicit_rating", "dcf", "disclaimer"}


def test_unknown_task_is_an_error(source: Any) -> None:
    with pytest.raises(ValueError, match="unknown task 'summary'"):
        score_report("text", "summary", source.get("AAPL", "base"))


def test_score_is_json_serialisable(references: list[Any]) -> None:
    ref = references[1]
    data = json.loads(json.dumps(score_report(ref.response, ref.family, ref.context).to_dict()))
    assert set(data["categories"]) == set(CATEGORIES)
    assert data["tier"] == "Excellent" and data["fact_check"]["checks"]
    assert "checks" not in score_report(ref.response, ref.family, ref.context).to_dict(figures=False)["fact_check"]


# ------------------------------------------------------------------------------------ structure tables


def _header_tables() -> dict[str, list[tuple[str, ...]]]:
    """Each family's header variants per section, as the family templates define them."""

    def two(headers: dict[str, tuple[str, ...]], keys: tuple[str, ...]) -> list[tuple[str, ...]]:
        return [tuple(h if h.startswith("##") else f"## {h}" for h in headers[k]) for k in keys]

    return {
        "financial_analysis": two(financial_analysis.HEADERS, financial_analysis.REQUIRED_SECTIONS),
        "risk_assessment": two(risk_assessment.HEADERS, risk_assessment.REQUIRED_SECTIONS),
        "investment_thesis": two(investment_thesis.REQUIRED_SECTIONS, tuple(investment_thesis.REQUIRED_SECTIONS)),
        "valuation": two(valuation.REQUIRED_SECTIONS, tuple(valuation.REQUIRED_SECTIONS)),
        "industry_analysis": [
            tuple(h.format(ticker="AAPL") for h in variants) for variants in industry_analysis.HEADERS.values()
        ],
    }


@pytest.mark.parametrize("family", sorted(_header_tables()))
def test_every_combination_of_template_headers_provides_every_required_section(family: str) -> None:
    tables = _header_tables()[family]
    expected = {"investment_thesis": 5, "valuation": 5, "risk_assessment": 5}.get(family, len(SECTIONS[family]))
    for combination in product(*tables):
        found = sections_found("\n".join(combination), family)
        present = [k for k, v in found.items() if v is not None]
        assert len(present) >= expected, (combination, found)
        assert len(set(found.values()) - {None}) == len(present)  # one header per section


def test_missing_sections_are_named(references: list[Any]) -> None:
    ref = next(r for r in references if r.family == "risk_assessment")
    text = re.sub(r"(?m)^## .*Regulatory.*$", "", ref.response)
    check = next(c for c in score_report(text, ref.family, ref.context).checks if c.name == "sections")
    assert not check.passed and "regulatory risk" in check.reason
