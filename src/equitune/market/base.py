"""The market-data provider protocol and the registry that maps provider names to implementations."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from equitune.errors import EquituneError, UnknownTickerError
from equitune.market.models import Company


@runtime_checkable
class MarketDataProvider(Protocol):
    """Where company fundamentals come from: an embedded snapshot, a file, or a live service."""

    name: str

    def get(self, ticker: str) -> Company:
        """Return the company's record; raise ``UnknownTickerError`` when the ticker is not known."""
        ...

    def tickers(self) -> list[str]:
        """Tickers this provider can return without a network request (may be empty for live providers)."""
        ...


def normalise_ticker(ticker: str) -> str:
    """Upper-case a ticker and spell share classes with a dot (BRK-B, brk/b -> BRK.B)."""
    return ticker.strip().upper().replace("-", ".").replace("/", ".")


def closest_tickers(ticker: str, known: Iterable[str], n: int = 5) -> list[str]:
    """Known tickers that look most like ``ticker`` (prefix matches first, then by similarity)."""
    wanted = normalise_ticker(ticker)
    known = list(known)
    prefix = sorted(t for t in known if t.startswith(wanted[:2]) and t != wanted)
    similar = difflib.get_close_matches(wanted, known, n=n, cutoff=0.3)
    ordered = list(dict.fromkeys(similar + prefix))
    return ordered[:n]


def unknown_ticker(ticker: str, provider: str, known: Iterable[str]) -> UnknownTickerError:
    """The error for a ticker a provider does not know, with the closest known ones."""
    return UnknownTickerError(ticker, provider, closest_tickers(ticker, known))


ProviderFactory = Callable[..., MarketDataProvider]
_REGISTRY: dict[str, ProviderFactory] = {}


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Make a provider available under ``name`` (used by ``get_provider`` and the CLI)."""
    _REGISTRY[name] = factory


def provider_names() -> list[str]:
    """Names of every registered provider."""
    _load_builtin_providers()
    return sorted(_REGISTRY)


def get_provider(name: str = "embedded", **options: object) -> MarketDataProvider:
    """Build the provider registered as ``name``; options go to its constructor."""
    _load_builtin_providers()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise EquituneError(
            f"Unknown market-data provider '{name}'. Available: {', '.join(sorted(_REGISTRY))}."
        ) from None
    return factory(**options)


def _load_builtin_providers() -> None:
    # Imported lazily so that `import equitune` never pays for providers it does not use.
    if _REGISTRY:
        return
    from equitune.market import providers  # noqa: F401  (registers on import)
