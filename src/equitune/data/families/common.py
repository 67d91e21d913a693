"""What every task family shares: the family record, the disclaimer, and small wording helpers."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from equitune.data.context import ExampleContext

T = TypeVar("T")

DISCLAIMERS: tuple[str, ...] = (
    "*This report is for informational purposes only and is not investment advice.*",
    "*Disclaimer: for informational purposes only; not investment advice or a recommendation to buy or sell.*",
    "*Not investment advice. Figures come from company filings and equitune's valuation engine.*",
    "*This analysis is not investment advice; do your own research before making any investment decision.*",
    "*For information only. This is not a solicitation or investment advice.*",
)


@dataclass(frozen=True)
class Family:
    """A task family: its identifier, instruction phrasings, the data-block sections its prompt carries,
    and the function that writes the response from an ``ExampleContext``."""

    name: str
    title: str
    instructions: tuple[str, ...]
    sections: tuple[str, ...]
    respond: Callable[[ExampleContext, random.Random], str]

    def instruction(self, ctx: ExampleContext, rng: random.Random) -> str:
        """One phrasing of the request, filled in with the company's name and ticker."""
        template = rng.choice(self.instructions)
        return template.format(name=ctx.company.name, ticker=ctx.ticker, sector=ctx.company.sector)

    def render(self, ctx: ExampleContext, rng: random.Random) -> tuple[str, str]:
        """(prompt, response) of one example: the request, a blank line and the DATA block, then the answer
        (the same prompt ``Example.prompt`` assembles)."""
        from equitune.data.blocks import data_block

        return f"{self.instruction(ctx, rng)}\n\n{data_block(ctx, list(self.sections))}", self.respond(ctx, rng)


def disclaimer(rng: random.Random) -> str:
    """A one-line disclaimer (the last line of every response)."""
    return rng.choice(DISCLAIMERS)


def pick(rng: random.Random, options: Sequence[T]) -> T:
    """One of ``options``."""
    return rng.choice(list(options))


def shuffled(rng: random.Random, items: Sequence[T], keep_first: int = 0) -> list[T]:
    """``items`` in a random order, the first ``keep_first`` left in place."""
    head, tail = list(items[:keep_first]), list(items[keep_first:])
    rng.shuffle(tail)
    return head + tail


def bullets(lines: Sequence[str]) -> str:
    """A markdown bullet list."""
    return "\n".join(f"- {line}" for line in lines)
