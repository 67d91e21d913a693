"""Readability: repetition, a restated instruction, pasted data and bare figures are measured and cost the score;
a few lines of misbound figures land in Poor; the reference answers stay clear of every measure."""

from __future__ import annotations

from typing import Any

from equitune.evaluate.readability import (
    NGRAM,
    bare_figures,
    copied_words,
    instruction_of,
    readability,
    repeated_lines,
    repeated_ngrams,
    restated,
)
from equitune.evaluate.rubric import score_report
from equitune.evaluate.scoring import summarise_scores
from equitune.formatting import fmt_money, fmt_pct, fmt_price

PROMPT = (
    "Draft the front page of an equity research note on ACME: rating, price target, upside and key points.\n\n"
    "DATA\nCompany: Acme Corp (ACME) | Industrials\n"
    "Estimates FY2024: revenue $10.0B, growth +2.0%, EBITDA margin 20.0%, EPS $1.00, P/E 20.0x\n"
)


# ------------------------------------------------------------------------------------------------ measures


def test_repeated_lines_ignore_markdown_case_short_lines_and_table_separators() -> None:
    text = "## Key points\n- The margin is high.\n**the margin is HIGH.**\n|---|---|\n|---|---|\nOk.\nOk.\n"
    assert repeated_lines(text) == (2, 1)  # two content lines of three or more words, one repeating the other


def test_repeated_ngrams_count_each_repeat_of_an_earlier_ngram() -> None:
    once = "one two three four five six"
    assert repeated_ngrams(once) == (2, 0)
    total, repeats = repeated_ngrams(f"{once} {once}")
    assert (total, repeats) == (8, 2)  # "one..five" and "two..six" again; the grams across the seam are new
    assert NGRAM == 5


def test_restated_finds_the_longest_run_of_instruction_words() -> None:
    words, run = restated("Draft the front page of an equity research note on ACME: here it is.", PROMPT)
    assert words == 11 and run.startswith("draft the front page")
    assert instruction_of(PROMPT).startswith("Draft") and "DATA" not in instruction_of(PROMPT)


def test_copied_words_count_whole_data_lines_pasted_back() -> None:
    line = "Estimates FY2024: revenue $10.0B, growth +2.0%, EBITDA margin 20.0%, EPS $1.00, P/E 20.0x"
    assert copied_words(f"Our view.\n{line}\n", PROMPT) == 13
    assert copied_words("Revenue was $10.0B, growth +2.0%.", PROMPT) == 0  # quoting figures is not pasting


class _Fig:
    def __init__(self, text: str, raw: str, quantity: str | None = None) -> None:
        self.start, self.quantity, self.kind = text.index(raw), quantity, "currency"


def test_bare_figures_are_unnamed_figures_on_lines_without_a_sentence() -> None:
    text = "## Valuation\n\n$245.99\n\nThe target of $172.62 blends two values we explain below.\n| $1 | $2 |\n"
    figures = [_Fig(text, "$245.99"), _Fig(text, "$172.62"), _Fig(text, "$1")]
    assert bare_figures(text, figures) == ["$245.99"]
    labelled = "**Upside:** $5.00"
    assert bare_figures(labelled, [_Fig(labelled, "$5.00", "price_target")]) == []


def test_readability_to_dict_has_every_measure() -> None:
    rd = readability("Alpha beta gamma delta epsilon.\nAlpha beta gamma delta epsilon.\n", PROMPT)
    d = rd.to_dict()
    assert d["repeated_lines"] == 1 and d["repeated_line_share"] == 0.5 and d["repetition"] == 0.5
    assert {"restated_words", "restates_instruction", "copied_share", "bare_figures"} <= set(d)


# ------------------------------------------------------------------------------------------------ the rubric


def _reference(references: list[Any], family: str = "executive_summary") -> Any:
    return next(r for r in references if r.family == family and r.context.ticker == "AAPL")


def test_reference_answers_are_clear_of_every_readability_measure(references: list[Any]) -> None:
    for ref in references:
        s = score_report(ref.response, ref.family, ref.context, prompt=ref.prompt)
        rd = s.readability
        assert rd is not None
        where = f"{ref.family} {ref.context.ticker}"
        assert rd.repetition <= 0.10 and not rd.restates_instruction, where
        assert rd.copied_share <= 0.15 and rd.bare_figures == 0, where
        factors = [c for c in s.checks if c.factor]
        assert {c.name for c in factors} == {"no_repetition", "own_words", "figures_in_sentences", "coherent"}
        assert all(c.passed for c in factors), (where, [c.reason for c in factors if not c.passed])


def test_a_repeated_paragraph_is_capped_at_poor(references: list[Any]) -> None:
    ref = _reference(references)
    clean = score_report(ref.response, ref.family, ref.context, prompt=ref.prompt)
    body, disclaimer = ref.response.rsplit("\n", 1)
    looped = body + ("\n" + body.split("\n## ")[-1]) * 2 + "\n" + disclaimer
    s = score_report(looped, ref.family, ref.context, prompt=ref.prompt)
    assert s.readability is not None and s.readability.repetition > 0.20
    assert "repetitive" in {c.name for c in s.caps} and s.tier == "Poor"
    assert clean.tier == "Excellent"
    assert not next(c for c in s.checks if c.name == "no_repetition").passed


def test_restating_the_instruction_costs_the_structure_score(references: list[Any]) -> None:
    ref = _reference(references)
    clean = score_report(ref.response, ref.family, ref.context, prompt=ref.prompt)
    echo = instruction_of(ref.prompt).strip()
    s = score_report(echo + "\n\n" + ref.response, ref.family, ref.context, prompt=ref.prompt)
    own = next(c for c in s.checks if c.name == "own_words")
    assert not own.passed and own.earned == 0.0 and "restates its instruction" in own.reason
    assert s.category("structure_quality").score == 0.0 < clean.category("structure_quality").score
    assert s.score < clean.score


def test_pasting_the_data_block_back_is_capped_at_poor(references: list[Any]) -> None:
    ref = _reference(references)
    data = ref.prompt.split("\nDATA\n", 1)[1]
    s = score_report(f"# Note\n\n{data}\n{data}", ref.family, ref.context, prompt=ref.prompt)
    assert s.readability is not None and s.readability.copied_share > 0.40
    assert {"pasted_data"} <= {c.name for c in s.caps} and s.tier == "Poor"


def test_a_few_lines_of_misbound_figures_land_in_poor(references: list[Any]) -> None:
    ref = _reference(references)
    a, company = ref.context.analysis, ref.context.company
    clean = score_report(ref.response, ref.family, ref.context, prompt=ref.prompt)
    body, disclaimer = ref.response.rsplit("\n", 1)
    misbound = (
        f"- The cost of equity is estimated to be around {fmt_money(company.latest.net_income)}.\n"
        f"- ROIC: {fmt_price(company.latest.dividends_per_share)}\n"
        f"- The DCF value is {fmt_pct(a.target.upside, signed=True)}.\n"
    )
    s = score_report(f"{body}\n{misbound}{disclaimer}", ref.family, ref.context, prompt=ref.prompt)
    assert s.fact_check.misbound == 3
    assert "misbound_figures" in {c.name for c in s.caps} and s.tier == "Poor" and clean.tier == "Excellent"


def test_the_summary_reports_repetition_and_binding(references: list[Any]) -> None:
    ref = _reference(references)
    body = ref.response
    scores = [
        score_report(body, ref.family, ref.context, prompt=ref.prompt),
        score_report(body + "\n" + body, ref.family, ref.context, prompt=ref.prompt),
    ]
    summary = summarise_scores(scores)
    assert summary["repetitive"] == 1
    assert summary["repetition"] is not None and summary["repetition"] > 0.2
    assert summary["misbound"] == 0
    assert summary["unattributed"] == sum(s.fact_check.unattributed for s in scores) > 0


def test_contradictions_cost_the_reasoning_score(references: list[Any]) -> None:
    ref = _reference(references)
    clean = score_report(ref.response, ref.family, ref.context, prompt=ref.prompt)
    target = fmt_price(ref.context.analysis.target.price_target)
    body, disclaimer = ref.response.rsplit("\n", 1)
    spoiled = f"{body}\nThe price target ranges from {target} to {target} over the year.\n{disclaimer}"
    s = score_report(spoiled, ref.family, ref.context, prompt=ref.prompt)
    coherent = next(c for c in s.checks if c.name == "coherent")
    assert not coherent.passed and coherent.earned == 0.75 and "moves a value to itself" in coherent.reason
    reasoning = s.category("investment_reasoning").score
    assert abs(reasoning - 0.75 * clean.category("investment_reasoning").score) < 1e-6
    assert next(c for c in clean.checks if c.name == "coherent").passed
