"""Built-in market-data providers, registered by name. Each module imports its heavy dependencies lazily."""

from __future__ import annotations

from typing import Any

from equitune.market.base import MarketDataProvider, register_provider


def _embedded(**options: Any) -> MarketDataProvider:
    from equitune.market.providers.embedded import EmbeddedProvider

    return EmbeddedProvider(**options)


def _csv(**options: Any) -> MarketDataProvider:
    from equitune.market.providers.csv_provider import CsvProvider

    return CsvProvider(**options)


def _yfinance(**options: Any) -> MarketDataProvider:
    from equitune.market.providers.yfinance_provider import YFinanceProvider

    return YFinanceProvider(**options)


def _edgar(**options: Any) -> MarketDataProvider:
    from equitune.market.providers.edgar_provider import EdgarProvider

    return EdgarProvider(**options)


register_provider("embedded", _embedded)
register_provider("csv", _csv)
register_provider("yfinance", _yfinance)
register_provider("edgar", _edgar)
