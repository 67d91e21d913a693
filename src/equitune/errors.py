"""Exceptions that carry a message a user can act on; the CLI prints them without a traceback."""

from __future__ import annotations


class EquituneError(Exception):
    """Base class of the errors equitune reports to the user as one clear message."""


class ConfigError(EquituneError):
    """A configuration file or value is invalid; the message names the file, the key and the fix."""


class DataError(EquituneError):
    """Input data is malformed; the message names the file, line and field."""


class UnknownTickerError(EquituneError):
    """A ticker is not known to the provider; the message lists the closest known tickers."""

    def __init__(self, ticker: str, provider: str, suggestions: list[str]):
        self.ticker = ticker
        self.provider = provider
        self.suggestions = suggestions
        hint = f" Closest: {', '.join(suggestions)}." if suggestions else ""
        super().__init__(f"Unknown ticker '{ticker}' for provider '{provider}'.{hint}")


class ProviderUnavailableError(EquituneError):
    """A live data provider cannot be reached (no network, rate limited, server error)."""


class FinanceError(EquituneError, ValueError):
    """A valuation input makes the computation meaningless (e.g. WACC <= terminal growth)."""
