"""The risk-assessment family over every embedded company and market condition: each figure it writes is
a fact and appears in the prompt's data block, the structure is complete, the risk ratings consistent."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import pytest

from equitune.data.blocks import price, rating_word
from equitune.data.context import ExampleContext
from equitune.data.families import get_family
from equitune.data.families import risk_assessment as module
from equitune.data.families.common import DISCLAIMERS
from equitune.data.numbers import Figure, extract_figures

FAMILY = module.FAMILY
SEEDS = (0, 1, 7)


@dataclass(frozen=True)
class Example:
    ctx: ExampleContext
    seed: int
    prompt: str
    response: str

    @property
    def label(self) -> str:
        return f"{self.ctx.ticker}/{self.ctx.condition.name}/seed {self.seed}"


@pytest.fixture(scope="module")
def examples(contexts: list[ExampleContext]) -> list[Example]:
    out = []
    for ctx in contexts:
        for seed in SEEDS:
            rng = random.Random(seed)
            prompt, response = FAMILY.render(ctx, rng)
            out.append(Example(ctx, seed, prompt, response))
    return out


def _in_prompt(figure: Figure, prompt_figures: list[Figure]) -> bool:
    return any(
        p.kind == figure.kind
        and p.estimate == figure.estimate
        and abs(p.value - figure.value) <= max(p.tolerance, figure.tolerance) * (1 + 1e-6) + 1e-9
        for p in prompt_figures
    )


def _headers(response: str) -> set[str]:
    return {line[3:].strip() for line in response.splitlines() if line.startswith("## ")}


def test_family_is_registered_and_complete() -> None:
    assert get_family("risk_assessment") is FAMILY
    assert len(set(FAMILY.instructions)) >= 20
    for text in FAMILY.instructions:
        assert "{name}" in text or "{ticker}" in text
    assert set(module.REQUIRED_SECTIONS) <= set(module.HEADERS)


def test_covers_every_company_and_condition(contexts: list[ExampleContext]) -> None:
    assert len({c.ticker for c in contexts}) == 70
    assert len({c.condition.name for c in contexts}) == 6


def test_every_figure_is_a_fact(examples: list[Example]) -> None:
    problems = []
    for ex in examples:
        for figure in extract_figures(ex.response):
            if not ex.ctx.facts.check(figure):
                problems.append(f"{ex.label}: {figure.raw!r} is not a fact")
    assert not problems, "\n".join(problems[:20])


def test_every_figure_is_in_the_prompt(examples: list[Example]) -> None:
    problems = []
    for ex in examples:
        prompt_figures = extract_figures(ex.prompt)
        for figure in extract_figures(ex.response):
            if figure.kind != "count" and not _in_prompt(figure, prompt_figures):
                problems.append(f"{ex.label}: {figure.raw!r} is not in the prompt")
    assert not problems, "\n".join(problems[:20])


def test_no_bare_counts_none_or_nan(examples: list[Example]) -> None:
    for ex in examples:
        counts = [f.raw for f in extract_figures(ex.response) if f.kind == "count"]
        assert not counts, f"{ex.label}: bare numbers {counts}"
        assert "None" not in ex.response, ex.label
        assert not re.search(r"\bnan\b", ex.response, re.IGNORECASE), ex.label


def test_structure_and_disclaimer(examples: list[Example]) -> None:
    for ex in examples:
        lines = ex.response.splitlines()
        assert lines[0].startswith("# "), ex.label
        assert lines[-1] in DISCLAIMERS, ex.label
        headers = _headers(ex.response)
        required = list(module.REQUIRED_SECTIONS) + ([] if ex.ctx.is_base else ["condition"])
        for key in required:
            assert headers & set(module.HEADERS[key]), f"{ex.label}: no {key} section"
        assert "| Risk | Rating |" in ex.response, ex.label
        assert "| Scenario | Value per share |" in ex.response, ex.label
        assert "\n- " in ex.response, ex.label


def test_condition_is_addressed(examples: list[Example]) -> None:
    for ex in examples:
        if ex.ctx.is_base:
            assert not _headers(ex.response) & set(module.HEADERS["condition"]), ex.label
        else:
            assert ex.ctx.condition.title in ex.response, ex.label
            target = ex.ctx.analysis.target.price_target
            assert target is None or price(target) in ex.response, ex.label


def test_wording_varies_with_the_seed_and_repeats_with_it(contexts: list[ExampleContext]) -> None:
    ctx = contexts[0]
    responses = {FAMILY.respond(ctx, random.Random(seed)) for seed in range(8)}
    assert len(responses) > 4
    assert FAMILY.respond(ctx, random.Random(3)) == FAMILY.respond(ctx, random.Random(3))


def test_ratings_are_consistent(examples: list[Example]) -> None:
    for ex in examples:
        risks = module._risks(ex.ctx)
        overall = module._overall(risks)
        assert f"**Overall risk: {overall}**" in ex.response, ex.label
        for risk in risks:
            assert f"| {risk.name} | {risk.level} |" in ex.response, ex.label
            assert risk.level in module.LEVELS
        assert rating_word(ex.ctx) in ex.response, ex.label


def test_apple_base_case(contexts: list[ExampleContext]) -> None:
    ctx = next(c for c in contexts if c.ticker == "AAPL" and c.is_base)
    text = FAMILY.respond(ctx, random.Random(0))
    assert "SELL rating" in text
    assert "Our price target of $172.62 (-31.1% against $250.42)" in text
    assert "| Bear | $161.96 | -35.3% | 0.0% | 25.3% | 9.9% |" in text
    assert "| Financial | Low | net debt/EBITDA 0.3x, interest coverage n/a |" in text
    assert "| Valuation / downside | High | bear case $161.96 (-35.3%) |" in text
    assert "Raising the WACC from 9.4% to 9.9% (growth 2.5%) cuts the DCF value per share from $99.24 to $92.35" in text
    assert "Digital Markets Act" in text


def test_utility_leverage_and_dividend_discount_downside(contexts: list[ExampleContext]) -> None:
    duk = next(c for c in contexts if c.ticker == "DUK" and c.is_base)
    text = FAMILY.respond(duk, random.Random(0))
    assert "| Financial | High | net debt/EBITDA 5.9x, interest coverage 2.3x |" in text
    # A utility is valued on its dividend: the downside speaks of dividend growth and the cost of equity.
    assert "| Scenario | Value per share | vs price $107.74 | Dividend growth | Cost of equity |" in text
    assert "Raising the cost of equity from 7.2% to 7.7%" in text and "WACC sensitivity" not in text
    assert "state regulators" in text


def test_a_bank_is_assessed_on_capital_credit_and_rates(contexts: list[ExampleContext]) -> None:
    bac = next(c for c in contexts if c.ticker == "BAC" and c.is_base)
    text = FAMILY.respond(bac, random.Random(0))
    assert "Capital: a CET1 ratio of 11.9%" in text
    assert "Credit: the provision for credit losses rose to $5.8B from $4.4B" in text
    assert "Rates: net interest income fell to $56.1B from $56.9B" in text
    assert "EBITDA" not in text
