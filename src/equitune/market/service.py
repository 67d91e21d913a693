"""Build the configured provider and the universe of companies that peers are drawn from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from equitune.errors import ConfigError
from equitune.market.base import MarketDataProvider, get_provider
from equitune.market.models import Company

if TYPE_CHECKING:
    from equitune.config import MarketConfig


def provider_from_config(market: MarketConfig) -> MarketDataProvider:
    """The provider named in the ``market`` config section, with its options."""
    if market.provider == "csv":
        if market.csv_file is None:
            raise ConfigError("market.provider is 'csv' but market.csv_file is not set (or pass --csv-file)")
        return get_provider("csv", path=market.csv_file, mapping=market.csv_mapping, as_of=market.csv_as_of)
    if market.provider == "edgar":
        return get_provider("edgar", cache_dir=market.cache_dir, user_agent=market.user_agent)
    if market.provider == "yfinance":
        return get_provider("yfinance", cache_dir=market.cache_dir)
    return get_provider("embedded")


def load_universe(provider: MarketDataProvider) -> list[Company]:
    """Every company the provider holds locally, plus the embedded snapshot when peers must come from it.

    Live providers hold nothing locally until asked, so their peers come from the embedded snapshot."""
    companies = {t: provider.get(t) for t in provider.tickers()}
    if provider.name in {"yfinance", "edgar"}:
        embedded = get_provider("embedded")
        for ticker in embedded.tickers():
            companies.setdefault(ticker, embedded.get(ticker))
    return list(companies.values())
