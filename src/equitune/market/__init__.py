"""Company fundamentals: the ``Company`` record and its providers (embedded, csv, yfinance, edgar)."""

from __future__ import annotations

from equitune.market.base import MarketDataProvider, get_provider, provider_names, register_provider
from equitune.market.models import GICS_SECTORS, Company, FiscalYear
from equitune.market.sectors import resolve_sector

__all__ = [
    "GICS_SECTORS",
    "Company",
    "FiscalYear",
    "MarketDataProvider",
    "get_provider",
    "provider_names",
    "register_provider",
    "resolve_sector",
]
