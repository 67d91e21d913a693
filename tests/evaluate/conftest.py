"""Fixtures of the evaluation tests: contexts and reference responses, built once per test module."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from equitune.data.context import ExampleContext
from equitune.data.families import available_families
from equitune.evaluate.scoring import ContextSource

# Companies across sectors, ratings and target methods (ED and its utility peers have no meaningful DCF), each
# under a market condition.
CASES: tuple[tuple[str, str], ...] = (
    ("AAPL", "base"),
    ("ED", "base"),
    ("EOG", "rates_up_100bp"),
    ("CME", "recession"),
    ("REG", "expansion"),
    ("LMT", "risk_off"),
    ("AAPL", "rates_down_100bp"),
)


@dataclass(frozen=True)
class Reference:
    """A training response of one family for one context, as the data generator writes it."""

    family: str
    context: ExampleContext
    prompt: str
    response: str


@pytest.fixture(scope="module")
def source() -> ContextSource:
    """Contexts over the embedded market data, memoised for the module."""
    return ContextSource()


@pytest.fixture(scope="module")
def references(source: ContextSource) -> list[Reference]:
    """Every family's response for every case (7 contexts x 6 families)."""
    found = []
    for i, (ticker, condition) in enumerate(CASES):
        context = source.get(ticker, condition)
        for j, family in enumerate(available_families()):
            prompt, response = family.render(context, random.Random(100 * i + j))
            found.append(Reference(family.name, context, prompt, response))
    return found
