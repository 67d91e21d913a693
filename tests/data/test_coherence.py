"""Whole-example checks: the DATA block against the company's data, the response against the DATA block, and
the coherence of the response's sentences. Each kind of contradiction is planted in a real generated example
and must be reported with its line number; a clean example passes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from equitune.data.coherence import coherence_issues
from equitune.data.context import build_context
from equitune.data.families import get_family
from equitune.data.validate import validate_file
from equitune.market.providers.embedded import load_snapshot

SNAPSHOT = load_snapshot()


def _example(ticker: str = "AAPL", family: str = "valuation") -> tuple[str, str]:
    ctx = build_context(SNAPSHOT[ticker], list(SNAPSHOT.values()))
    return get_family(family).render(ctx, random.Random(0))


def _record(prompt: str, response: str, ticker: str = "AAPL", family: str = "valuation") -> dict[str, object]:
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
        "family": family,
        "ticker": ticker,
        "condition": "base",
    }


def _validate(tmp_path: Path, records: list[dict[str, object]]) -> list[str]:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return [str(issue) for issue in validate_file(path).issues]


def test_generated_examples_are_clean(tmp_path: Path) -> None:
    records = [
        _record(*_example(t, f), ticker=t, family=f)
        for t in ("AAPL", "JPM", "NEE", "LLY")
        for f in ("valuation", "investment_thesis", "executive_summary", "risk_assessment")
    ]
    assert _validate(tmp_path, records) == []


@pytest.mark.parametrize(
    ("sentence", "rule"),
    [
        ("The price target moves from $172.62 to $172.62 under this scenario.", "self-comparison"),
        ("At $99.24 the DCF value sits above the DCF value of $99.24 we set out.", "self-comparison"),
        ("The rating is SELL with an upside of -18.0% to -18.0% on our numbers.", "self-comparison"),
        (
            "Our $245.99 target blends a DCF value of $99.24 with a comparables value of $245.99 (comparables value "
            "alone).",
            "single-source blend",
        ),
        ("Net income rose to $93.7B from $97.0B in FY2023.", "direction"),
        ("The operating margin fell from 29.8% to 31.5% in FY2024.", "direction"),
        ("The CET1 ratio of 11.8% (up from 11.9%) sets the buyback capacity.", "direction"),
        ("The implied return of -31.1% clears our Buy threshold, so we rate the shares.", "rating"),
        ("We rate AAPL **BUY** on these numbers.", "rating"),
        ("Our target uses a DCF value of -$35.25 per share.", "negative value"),
    ],
)
def test_each_planted_contradiction_is_reported_with_its_line(tmp_path: Path, sentence: str, rule: str) -> None:
    prompt, response = _example()
    lines = response.split("\n")
    lines.insert(3, sentence)
    planted = "\n".join(lines)
    found = coherence_issues(planted, prompt)
    assert [(i.line, i.rule) for i in found if i.line == 4] == [(4, rule)], found
    clean = _record(prompt, response)
    issues = _validate(tmp_path, [clean, _record(prompt, planted)])
    assert any(i.startswith("line 2: response: incoherent: line 4 of the response: " + rule) for i in issues), issues
    assert not any(i.startswith("line 1:") for i in issues)


def test_a_data_block_that_disagrees_with_the_record_is_reported(tmp_path: Path) -> None:
    """The case of a DATA block whose price is not the record's, with a response that quotes the record: both
    halves are wrong, and both are reported."""
    prompt, response = _example()
    assert "Price: $250.42" in prompt and "$250.42" in response
    tampered = prompt.replace("$250.42", "$152.55")
    issues = _validate(tmp_path, [_record(tampered, response)])
    assert any(i.startswith("line 1: prompt:") and "$152.55" in i for i in issues), issues
    assert any(
        i.startswith("line 1: response:") and "not given in the DATA block" in i and "$250.42" in i for i in issues
    ), issues


def test_a_rating_against_the_stated_bands_is_reported() -> None:
    prompt, response = _example()
    bad = prompt.replace("rating SELL (Buy at or above", "rating HOLD (Buy at or above")
    found = coherence_issues(response.replace("**SELL**", "**HOLD**"), bad)
    assert any(i.rule == "rating" and "gives SELL under the stated bands, not HOLD" in i.message for i in found)


def test_level_figures_and_true_directions_pass() -> None:
    text = (
        "Revenue rose to $391.0B from $383.3B. The margin fell from 31.5% to 29.8%. "
        "ROIC of 95.0% sits above the 9.4% WACC. The price target stays at $172.62. "
        "Scenario values run from $161.96 to $185.14, bear -35.3% to bull -26.1%."
    )
    assert coherence_issues(text) == []
