"""The investment-thesis family: every figure is a fact given in the prompt, for every company/condition."""

from __future__ import annotations

import random
import re

from equitune.data.context import ExampleContext, build_context
from equitune.data.families import get_family
from equitune.data.families.common import DISCLAIMERS
from equitune.data.families.investment_thesis import CATALYSTS, FAMILY, REQUIRED_SECTIONS, catalysts
from equitune.data.numbers import extract_figures
from equitune.market.providers.embedded import load_snapshot

SEEDS = (0, 1, 2, 3)
_COUNT_WORDS = {3: "three", 4: "four", 5: "five"}


def _render(ctx: ExampleContext, seed: int) -> tuple[str, str]:
    return FAMILY.render(ctx, random.Random(seed))


def _catalyst_section(response: str) -> list[str]:
    lines = response.split("\n")
    start = next(i for i, line in enumerate(lines) if line in REQUIRED_SECTIONS["catalysts"])
    section: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("## ") or line in DISCLAIMERS:
            break
        section.append(line)
    return section


def _check_example(ctx: ExampleContext, prompt: str, response: str) -> None:
    where = (ctx.ticker, ctx.condition.name)
    given = extract_figures(prompt)
    for figure in extract_figures(response):
        assert figure.kind != "count", (*where, figure.raw)  # counts are written in words
        assert ctx.facts.check(figure), (*where, figure.raw)
        assert any(g.kind == figure.kind and figure.matches(g.value) for g in given), (*where, figure.raw)
    lines = response.split("\n")
    assert lines[0].startswith("# "), where
    assert lines[-1] in DISCLAIMERS, where
    for key, headers in REQUIRED_SECTIONS.items():
        assert any(h in lines for h in headers), (*where, key)
    assert not re.search(r"\bNone\b", response), where
    assert not re.search(r"\bnan\b", response, re.IGNORECASE), where
    assert "| Bull |" in response and "| Bear |" in response, where
    section = _catalyst_section(response)
    items = [line for line in section if line.startswith("- **")]
    assert 3 <= len(items) <= 5, where
    assert _COUNT_WORDS[len(items)] in section[0].lower(), (*where, section[0])
    if not ctx.is_base:
        assert f"## Market Condition: {ctx.condition.title}" in lines, where


def test_every_example_is_grounded(contexts: list[ExampleContext]) -> None:
    assert len(contexts) == 70 * 6
    for ctx in contexts:
        for seed in SEEDS:
            prompt, response = _render(ctx, seed)
            _check_example(ctx, prompt, response)


def test_every_company_supports_at_least_three_catalysts(contexts: list[ExampleContext]) -> None:
    for ctx in contexts:
        assert sum(1 for make in CATALYSTS if make(ctx)) >= 3, ctx.ticker
    counts = {len(catalysts(ctx, random.Random(seed))) for ctx in contexts[:10] for seed in range(20)}
    assert counts == {3, 4, 5}
    in_responses = {
        len([x for x in _catalyst_section(FAMILY.respond(ctx, random.Random(seed))) if x.startswith("- **")])
        for ctx in contexts[:12]
        for seed in range(12)
    }
    assert in_responses == {3, 4, 5}


def test_instructions_are_varied() -> None:
    assert len(set(FAMILY.instructions)) >= 20
    for template in FAMILY.instructions:
        template.format(name="N", ticker="T", sector="S")
    assert get_family("investment_thesis") is FAMILY


def test_wording_and_order_vary(contexts: list[ExampleContext]) -> None:
    ctx = next(c for c in contexts if c.ticker == "AAPL" and c.is_base)
    responses = {FAMILY.respond(ctx, random.Random(seed)) for seed in range(12)}
    assert len(responses) >= 8
    orders = {tuple(line for line in r.split("\n") if line.startswith("## ")) for r in responses}
    assert len(orders) >= 4


def test_apple_base_case(contexts: list[ExampleContext]) -> None:
    ctx = next(c for c in contexts if c.ticker == "AAPL" and c.is_base)
    response = FAMILY.respond(ctx, random.Random(0))
    assert "**SELL**" in response
    assert "$172.62" in response  # price target = base scenario
    assert "| Bull | $185.14 | -26.1% | 4.0% | 29.3% | 8.9% |" in response
    assert "| Bear | $161.96 | -35.3% | 0.0% | 25.3% | 9.9% |" in response
    assert "first-year revenue growth of 4.0% (above the 2.0% base case)" in response
    assert "a higher WACC of 9.9% (base 9.4%)" in response
    assert "even the bull case sits below the $250.42 share price" in response
    assert "the whole range sits below the current price" in response


def test_condition_effect_is_stated(contexts: list[ExampleContext]) -> None:
    ctx = next(c for c in contexts if c.ticker == "AAPL" and c.condition.name == "recession")
    response = FAMILY.respond(ctx, random.Random(0))
    assert "first-year revenue growth -800 bp to -6.0%" in response
    assert "FCF margin -200 bp to 25.3%" in response
    assert "the price target falls from $172.62 to $160.75" in response
    assert "the rating stays SELL" in response


def test_company_without_a_dcf() -> None:
    """Without a DCF the scenarios have no growth or margin assumptions; the thesis still holds together."""
    snapshot = load_snapshot()
    apple = snapshot["AAPL"]
    years = [fy.model_copy(update={"free_cash_flow": None, "operating_cash_flow": None}) for fy in apple.financials]
    company = apple.model_copy(update={"financials": years})
    ctx = build_context(company, list(snapshot.values()))
    assert ctx.analysis.dcf is None
    for seed in SEEDS:
        prompt, response = _render(ctx, seed)
        _check_example(ctx, prompt, response)
