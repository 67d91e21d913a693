"""The data contract of training examples: one JSON object per line, in one of two formats.

``messages`` (default)::

    {"messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": "<request>\\n\\nDATA\\n..."},
                  {"role": "assistant", "content": "<response>"}],
     "family": "valuation", "ticker": "AAPL", "condition": "base", "rating": "Sell",
     "source": "generated", "id": "<sha1 of user + assistant>"}

``alpaca``::

    {"instruction": "<request>", "input": "DATA\\n...", "output": "<response>", "system": "...",
     "family": ..., "ticker": ..., "condition": ..., "rating": ..., "source": ..., "id": ...}

``family`` is one of the six identifiers (``executive_summary``, ``financial_analysis``, ``valuation``,
``investment_thesis``, ``risk_assessment``, ``industry_analysis``) or ``custom``; ``ticker`` may be null for a
custom example about no particular company; ``condition`` names the market-condition variant the engine
computed (``base``, ``rates_up_100bp``, ``rates_down_100bp``, ``recession``, ``risk_off``, ``expansion``).
Every line is validated on read, with its line number in every error (``equitune data validate``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

Format = Literal["messages", "alpaca"]
ROLES = ("system", "user", "assistant")
SYSTEM_PROMPT = (
    "You are an equity research analyst at an institutional investment firm. Write clear, structured research "
    "(markdown headers, bullets, tables) grounded strictly in the figures provided in the DATA block; never "
    "invent numbers. End every answer with a one-line disclaimer that it is not investment advice."
)


@dataclass(frozen=True)
class Example:
    """One training example, format-independent."""

    family: str
    ticker: str | None
    condition: str
    rating: str | None
    request: str
    data: str
    response: str
    source: Literal["generated", "custom"] = "generated"
    system: str = SYSTEM_PROMPT

    @property
    def prompt(self) -> str:
        """The user turn: the request, then the data block (when there is one)."""
        return f"{self.request}\n\n{self.data}" if self.data else self.request

    @property
    def id(self) -> str:
        """Stable identity of the example: sha1 of its prompt and response."""
        return hashlib.sha1(f"{self.prompt}\x00{self.response}".encode()).hexdigest()

    def to_record(self, fmt: Format = "messages") -> dict[str, Any]:
        """The JSON object of this example in ``fmt``."""
        meta = {
            "family": self.family,
            "ticker": self.ticker,
            "condition": self.condition,
            "rating": self.rating,
            "source": self.source,
            "id": self.id,
        }
        if fmt == "alpaca":
            return {
                "instruction": self.request,
                "input": self.data,
                "output": self.response,
                "system": self.system,
                **meta,
            }
        return {
            "messages": [
                {"role": "system", "content": self.system},
                {"role": "user", "content": self.prompt},
                {"role": "assistant", "content": self.response},
            ],
            **meta,
        }
