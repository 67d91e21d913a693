"""The industry-analysis family over every embedded company and market condition: every figure is a fact
and is in the prompt, ranks are words, the required sections are there, and the disclaimer ends it."""

from __future__ import annotations

import random
import re

from equitune.data.blocks import count_word, industry_block, ordinal_word
from equitune.data.context import ExampleContext
from equitune.data.families import get_family
from equitune.data.families.common import DISCLAIMERS
from equitune.data.families.industry_analysis import HEADERS, INSTRUCTIONS, REQUIRED
from equitune.data.numbers import Figure, extract_figures

FAMILY = get_family("industry_analysis")
SEEDS = (0, 1, 2)


def _render(ctx: ExampleContext, seed: int) -> tuple[str, str]:
    return FAMILY.render(ctx, random.Random(seed))


def _in_prompt(figure: Figure, prompt_figures: list[Figure]) -> bool:
    return any(
        g.kind == figure.kind and abs(g.value - figure.value) <= max(g.tolerance, figure.tolerance) + 1e-9
        for g in prompt_figures
    )


def test_every_example(contexts: list[ExampleContext]) -> None:
    assert len(contexts) == 70 * 6
    for ctx in contexts:
        for seed in SEEDS:
            prompt, response = _render(ctx, seed)
            where = f"{ctx.ticker} / {ctx.condition.name} / seed {seed}"
            prompt_figures = extract_figures(prompt)
            figures = extract_figures(response)
            for figure in figures:
                # (a) a fact, (b) in the prompt, written the same way; no bare counts (ranks are words)
                assert figure.kind != "count", f"{where}: bare number {figure.raw!r}"
                assert ctx.facts.check(figure), f"{where}: {figure.raw!r} is not a fact"
                assert _in_prompt(figure, prompt_figures), f"{where}: {figure.raw!r} is not in the prompt"
            # (c) the disclaimer ends it
            assert response.splitlines()[-1] in DISCLAIMERS, where
            # (d) the required sections, and the condition under a non-base condition
            assert response.startswith("# "), where
            for key in REQUIRED:
                options = [h.format(ticker=ctx.ticker) for h in HEADERS[key]]
                assert any(f"\n{h}\n" in response for h in options), f"{where}: no {key} section"
            assert ("## Scenario: " in response) == (not ctx.is_base), where
            assert "|---" in response, f"{where}: no benchmarking table"
            # (e) nothing missing written as None / nan
            assert not re.search(r"\b(?:None|nan|NaN|inf)\b", response), f"{where}: a missing value written"


def test_every_peer_is_named_with_its_ticker(contexts: list[ExampleContext]) -> None:
    for ctx in contexts[::6]:
        _, response = _render(ctx, 0)
        for peer in ctx.peers:
            assert f"{peer.name} ({peer.ticker})" in response, f"{ctx.ticker}: {peer.ticker} missing"


def test_industry_block_writes_ranks_in_words(contexts: list[ExampleContext]) -> None:
    for ctx in contexts[::6]:
        block = industry_block(ctx)
        assert not [f for f in extract_figures(block) if f.kind == "count"], ctx.ticker
        for figure in extract_figures(block):
            assert ctx.facts.check(figure), f"{ctx.ticker}: {figure.raw!r} in the block is not a fact"


def test_instructions() -> None:
    assert len(set(INSTRUCTIONS)) >= 20
    assert FAMILY.sections == ("header", "industry", "comps", "condition")


def test_apple_base_case(contexts: list[ExampleContext]) -> None:
    ctx = next(c for c in contexts if c.ticker == "AAPL" and c.is_base)
    s = ctx.industry
    assert s.peer_count == 7 and s.ranks.revenue is not None and s.ranks.revenue.position == 1
    for seed in SEEDS:
        _, response = _render(ctx, seed)
        assert "It is the largest of the eight by revenue." in response
        assert "| **Apple Inc. (AAPL)** | $391.0B | +2.0% |" in response
        assert "NVIDIA Corporation (NVDA)" in response
        assert "$224.88" in response  # value at the peer median EV/EBITDA (MSFT among the IT peers)
        assert "44.9%" in response  # AAPL's share of the group's revenue
        assert "below the peer median of +11.2%" in response


def test_number_words() -> None:
    assert [count_word(n) for n in (0, 7, 13, 20, 42, 100, 115, 2001)] == [
        "zero",
        "seven",
        "thirteen",
        "twenty",
        "forty-two",
        "one hundred",
        "one hundred fifteen",
        "two thousand one",
    ]
    assert [ordinal_word(n) for n in (1, 2, 3, 4, 5, 7, 8, 9, 12, 20, 21, 33, 100)] == [
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "seventh",
        "eighth",
        "ninth",
        "twelfth",
        "twentieth",
        "twenty-first",
        "thirty-third",
        "one hundredth",
    ]
