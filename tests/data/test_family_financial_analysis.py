"""The financial-analysis family over every embedded company and market condition: each figure it writes is
a fact and appears in the prompt's data block, the structure is complete, and the prose is consistent."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import pytest

from equitune.data.context import ExampleContext
from equitune.data.families import financial_analysis as module
from equitune.data.families import get_family
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
    assert get_family("financial_analysis") is FAMILY
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
        assert "| Metric |" in ex.response, ex.label
        assert "\n- " in ex.response, ex.label


def test_condition_is_addressed(examples: list[Example]) -> None:
    for ex in examples:
        if ex.ctx.is_base:
            assert not _headers(ex.response) & set(module.HEADERS["condition"]), ex.label
        else:
            assert ex.ctx.condition.title in ex.response, ex.label
            assert "Computed effect" in ex.response, ex.label


def test_wording_varies_with_the_seed_and_repeats_with_it(contexts: list[ExampleContext]) -> None:
    ctx = contexts[0]
    responses = {FAMILY.respond(ctx, random.Random(seed)) for seed in range(8)}
    assert len(responses) > 4
    assert FAMILY.respond(ctx, random.Random(3)) == FAMILY.respond(ctx, random.Random(3))


def test_apple_base_case(contexts: list[ExampleContext]) -> None:
    ctx = next(c for c in contexts if c.ticker == "AAPL" and c.is_base)
    text = FAMILY.respond(ctx, random.Random(0))
    assert "ROIC of 95.0% against a WACC of 9.4%" in text
    assert "| Net debt/EBITDA | 0.3x | low |" in text
    assert re.search(r"Revenue (rose|increased|grew) to \$391\.0B from \$383\.3B", text)
    assert "Interest coverage cannot be computed" in text
    assert "EBITDA margin expanded" in text  # EBITDA +7.0% against revenue +2.0%
    assert "| Net income | $93.7B | $97.0B | lower |" in text


def test_negative_equity_and_operating_loss_are_explained(contexts: list[ExampleContext]) -> None:
    cci = next(c for c in contexts if c.ticker == "CCI" and c.is_base)
    text = FAMILY.respond(cci, random.Random(0))
    assert "ROE is not meaningful: shareholders' equity is -$133M" in text
    assert "Net debt/EBITDA is not meaningful because EBITDA was -$1.2B" in text
    assert "Operating income swung to -$2.9B from $2.4B" in text
