"""GICS sector names and the everyday aliases users type for them ("technology", "healthcare")."""

from __future__ import annotations

import re

from equitune.errors import EquituneError
from equitune.market.models import GICS_SECTORS

_ALIASES: dict[str, str] = {
    "tech": "Information Technology",
    "technology": "Information Technology",
    "it": "Information Technology",
    "info tech": "Information Technology",
    "healthcare": "Health Care",
    "health": "Health Care",
    "financial": "Financials",
    "finance": "Financials",
    "consumer discretionary": "Consumer Discretionary",
    "discretionary": "Consumer Discretionary",
    "consumer cyclical": "Consumer Discretionary",
    "staples": "Consumer Staples",
    "consumer defensive": "Consumer Staples",
    "communication": "Communication Services",
    "communications": "Communication Services",
    "telecom": "Communication Services",
    "media": "Communication Services",
    "industrial": "Industrials",
    "material": "Materials",
    "basic materials": "Materials",
    "utility": "Utilities",
    "realestate": "Real Estate",
    "reit": "Real Estate",
    "reits": "Real Estate",
    "oil and gas": "Energy",
}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().casefold().replace("&", "and"))


def resolve_sector(name: str) -> str:
    """The GICS sector meant by ``name`` (case-insensitive; aliases such as 'technology' accepted).

    An unknown name is an error listing the valid sectors."""
    key = _key(name)
    for sector in GICS_SECTORS:
        if _key(sector) == key:
            return sector
    if key in _ALIASES:
        return _ALIASES[key]
    if key.replace(" ", "") in _ALIASES:
        return _ALIASES[key.replace(" ", "")]
    raise EquituneError(f"Unknown sector '{name}'. Valid GICS sectors: {', '.join(GICS_SECTORS)}.")
