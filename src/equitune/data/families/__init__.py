"""The six task families, by identifier. Each module defines ``FAMILY``."""

from __future__ import annotations

from importlib import import_module

from equitune.data.families.common import Family

FAMILY_IDS: tuple[str, ...] = (
    "executive_summary",
    "financial_analysis",
    "valuation",
    "investment_thesis",
    "risk_assessment",
    "industry_analysis",
)


def get_family(name: str) -> Family:
    """The family with identifier ``name``; an unknown one is an error listing the six."""
    if name not in FAMILY_IDS:
        raise ValueError(f"unknown task family '{name}'; valid: {', '.join(FAMILY_IDS)}")
    family: Family = import_module(f"equitune.data.families.{name}").FAMILY
    return family


def available_families() -> list[Family]:
    """Every family whose module is present."""
    found = []
    for name in FAMILY_IDS:
        try:
            found.append(get_family(name))
        except ModuleNotFoundError:
            continue
    return found
