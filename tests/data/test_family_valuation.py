"""The valuation family: every figure is a fact given in the prompt, over all companies and conditions."""

from __future__ import annotations

import random
import re

from equitune.data.blocks import price, sensitivity_table_of
from equitune.data.context import ExampleContext, build_context
from equitune.data.families import get_family
from equitune.data.families.common import DISCLAIMERS
from equitune.data.families.valuation import FAMILY, REQUIRED_SECTIONS
from equitune.data.numbers import extract_figures
from equitune.market.providers.embedded import load_snapshot

SEEDS = (0, 1, 2, 3)


def _render(ctx: ExampleContext, seed: int) -> tuple[str, str]:
    return FAMILY.render(ctx, random.Random(seed))


def _check_example(ctx: ExampleContext, prompt: str, response: str) -> None:
    where = (ctx.ticker, ctx.condition.name)
    given = extract_figures(prompt)
    for figure in extract_figures(response):
        # Rule: no bare counts in prose (numbers in words instead).
        assert figure.kind != "count", (*where, figure.raw)
        assert ctx.facts.check(figure), (*where, figure.raw)
        assert any(g.kind == figure.kind and figure.matches(g.value) for g in given), (*where, figure.raw)
    lines = response.split("\n")
    assert lines[0].startswith("# "), where
    assert lines[-1] in DISCLAIMERS, where
    for key, headers in REQUIRED_SECTIONS.items():
        assert any(h in lines for h in headers), (*where, key)
    assert not re.search(r"\bNone\b", response), where
    assert not re.search(r"\bnan\b", response, re.IGNORECASE), where
    assert "|" in response  # tables
    if not ctx.is_base:
        assert f"## Market Condition: {ctx.condition.title}" in lines, where
        assert ctx.condition.name != "base"


def test_every_example_is_grounded(contexts: list[ExampleContext]) -> None:
    assert len(contexts) == 70 * 6
    for ctx in contexts:
        for seed in SEEDS:
            prompt, response = _render(ctx, seed)
            _check_example(ctx, prompt, response)


def test_sensitivity_table_matches_the_engine(contexts: list[ExampleContext]) -> None:
    for ctx in contexts[:30] + [c for c in contexts if c.analysis.method != "dcf"][:12]:
        s, _, _ = sensitivity_table_of(ctx)  # the DCF's, or the excess-return / dividend-discount model's
        assert s is not None, ctx.ticker
        response = FAMILY.respond(ctx, random.Random(0))
        base = s.values[s.base_row][s.base_column]
        assert base is not None
        assert f"**{price(base)}**" in response
        for row in s.values:
            for v in row:
                assert price(v) in response


def test_instructions_are_varied() -> None:
    assert len(set(FAMILY.instructions)) >= 20
    for template in FAMILY.instructions:
        template.format(name="N", ticker="T", sector="S")
    assert get_family("valuation") is FAMILY


def test_wording_and_order_vary(contexts: list[ExampleContext]) -> None:
    ctx = next(c for c in contexts if c.ticker == "AAPL" and c.is_base)
    responses = {FAMILY.respond(ctx, random.Random(seed)) for seed in range(12)}
    assert len(responses) >= 8
    orders = {tuple(line for line in r.split("\n") if line.startswith("## ")) for r in responses}
    assert len(orders) >= 4


def test_apple_base_case(contexts: list[ExampleContext]) -> None:
    ctx = next(c for c in contexts if c.ticker == "AAPL" and c.is_base)
    response = FAMILY.respond(ctx, random.Random(0))
    t, d = ctx.analysis.target, ctx.analysis.dcf
    assert d is not None
    assert ctx.rating == "Sell"
    assert "**SELL**" in response
    assert "$172.62" in response and price(t.price_target) == "$172.62"
    assert "-31.1%" in response
    assert "$99.24" in response  # DCF value per share
    assert "$245.99" in response  # comparables value per share (MSFT among the IT peers)
    assert "| **WACC** | **9.4%** |" in response
    assert "| **Enterprise value** | **$1.57T** |" in response
    assert "| NVIDIA Corporation (NVDA) | 96.7x | 112.5x | 54.7x |" in response
    assert "| EV/EBITDA | 26.0x | 24.6x | 37.6x | 29.0x | $224.88 |" in response
    assert "a premium to the 26.0x peer median" in response
    assert "Every cell sits below the $250.42 share price" in response
    assert "## Market Condition" not in response


def test_condition_effect_is_stated(contexts: list[ExampleContext]) -> None:
    ctx = next(c for c in contexts if c.ticker == "AAPL" and c.condition.name == "rates_up_100bp")
    response = FAMILY.respond(ctx, random.Random(0))
    assert "the risk-free rate moves +100 bp to 5.5%" in response
    assert f"up from {'9.4%'} in the base case" in response
    assert "lower than the base-case $172.62" in response


def test_company_without_a_dcf() -> None:
    """A record without cash-flow figures cannot run a DCF: the sections stay, with comparables alone."""
    snapshot = load_snapshot()
    apple = snapshot["AAPL"]
    years = [fy.model_copy(update={"free_cash_flow": None, "operating_cash_flow": None}) for fy in apple.financials]
    company = apple.model_copy(update={"financials": years})
    ctx = build_context(company, list(snapshot.values()))
    assert ctx.analysis.dcf is None and ctx.analysis.target.method == "comps_only"
    for seed in SEEDS:
        prompt, response = _render(ctx, seed)
        _check_example(ctx, prompt, response)
        assert "could not be run" in response


def test_banks_and_utilities_are_valued_by_their_sector_model(contexts: list[ExampleContext]) -> None:
    jpm = next(c for c in contexts if c.ticker == "JPM" and c.is_base)
    response = FAMILY.respond(jpm, random.Random(0))
    assert "excess-return (justified P/B) model rather than a DCF" in response
    assert "Justified P/B = (ROE - g) / (ke - g)" in response and "| P/B |" in response
    assert "EV/EBITDA" not in response and "Implied return:" in response
    nee = next(c for c in contexts if c.ticker == "NEE" and c.is_base)
    response = FAMILY.respond(nee, random.Random(0))
    assert "dividend-discount model rather than a DCF" in response and "Implied growth:" in response


def test_a_negative_dcf_is_excluded_and_never_printed(contexts: list[ExampleContext]) -> None:
    excluded = [c for c in contexts if c.analysis.dcf is not None and not c.analysis.dcf.meaningful]
    assert excluded
    for ctx in excluded:
        prompt, response = _render(ctx, 0)
        value = price(ctx.analysis.dcf.value_per_share)  # type: ignore[union-attr]
        assert value not in prompt and value not in response, ctx.ticker
        assert "excluded" in response
