"""The embedded snapshot: real US-listed companies with figures as reported in their annual filings.

The snapshot lives in ``equitune/market/snapshot/<sector>.json`` (one file per GICS sector, each
``{"companies": [...]}`` of ``Company`` records) and is read once per process.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from equitune.errors import DataError
from equitune.market.base import normalise_ticker, unknown_ticker
from equitune.market.models import Company


@lru_cache(maxsize=1)
def load_snapshot() -> dict[str, Company]:
    """All embedded companies by ticker; a malformed snapshot file is an error naming file and record."""
    companies: dict[str, Company] = {}
    folder = resources.files("equitune.market") / "snapshot"
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".json"):
            continue
        try:
            records = json.loads(entry.read_text(encoding="utf-8"))["companies"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise DataError(f"snapshot file {entry.name}: {exc}") from exc
        for index, record in enumerate(records):
            try:
                company = Company.model_validate(record)
            except ValueError as exc:
                raise DataError(f"snapshot file {entry.name}, company #{index + 1}: {exc}") from exc
            if company.ticker in companies:
                raise DataError(f"snapshot file {entry.name}: duplicate ticker {company.ticker}")
            companies[company.ticker] = company
    return companies


class EmbeddedProvider:
    """Offline fundamentals shipped inside the package (the default provider)."""

    name = "embedded"

    def __init__(self) -> None:
        self._companies = load_snapshot()

    def get(self, ticker: str) -> Company:
        """The embedded record for ``ticker`` (BRK-B and brk.b both work)."""
        key = normalise_ticker(ticker)
        try:
            return self._companies[key]
        except KeyError:
            raise unknown_ticker(ticker, self.name, self._companies) from None

    def tickers(self) -> list[str]:
        """Every embedded ticker, sorted."""
        return sorted(self._companies)

    def companies(self, sector: str | None = None) -> list[Company]:
        """Embedded companies, optionally of one GICS sector (exact name, case-insensitive)."""
        wanted = sector.casefold() if sector else None
        return [c for t, c in sorted(self._companies.items()) if wanted is None or c.sector.casefold() == wanted]
