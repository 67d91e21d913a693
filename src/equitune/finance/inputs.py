"""The market inputs every valuation needs (price, diluted shares, market cap) and checks on a record.

Any two of price, diluted shares and market capitalisation give the third, so a record needs only two; a
record with fewer, without fiscal years, or with a non-finite figure cannot be valued and raises
``FinanceError`` naming what is missing.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from equitune.errors import FinanceError
from equitune.finance.base import ResultModel
from equitune.market.models import FISCAL_FIELDS, Company, FiscalYear

MarketSource = Literal["reported", "derived"]


class MarketData(ResultModel):
    """Price, diluted shares and market capitalisation as used (each reported, or derived from the others)."""

    price: float = Field(description="Share price, currency units.")
    diluted_shares: float = Field(description="Diluted shares, millions.")
    market_cap: float = Field(description="Market capitalisation, millions.")
    price_source: MarketSource = Field(description="'derived' = market cap / diluted shares.")
    shares_source: MarketSource = Field(description="'derived' = market cap / price.")
    market_cap_source: MarketSource = Field(description="'derived' = price x diluted shares.")


def check_finite(company: Company) -> None:
    """Raise ``FinanceError`` naming the first figure of ``company`` that is NaN or infinite."""
    for name in ("price", "diluted_shares", "market_cap", "beta"):
        value = getattr(company, name)
        if value is not None and not math.isfinite(value):
            raise FinanceError(f"{company.ticker}: {name} is {value}, not a finite number")
    for year in company.financials:
        for name in FISCAL_FIELDS:
            value = getattr(year, name)
            if value is not None and not math.isfinite(value):
                raise FinanceError(f"{company.ticker}: FY{year.fiscal_year}.{name} is {value}, not a finite number")


def latest_year(company: Company) -> FiscalYear:
    """The newest fiscal year, or ``FinanceError`` when the record has none."""
    if not company.financials:
        raise FinanceError(f"{company.ticker}: no fiscal-year figures, nothing to value")
    return company.financials[0]


def market_data(company: Company) -> MarketData:
    """Price, diluted shares and market cap of ``company``; a missing one is derived from the other two.

    Raises ``FinanceError`` when fewer than two are reported (the record cannot be valued per share)."""
    price, shares, cap = company.price, company.diluted_shares, company.market_cap
    if price is not None and shares is not None:
        cap_source: MarketSource = "reported" if cap is not None else "derived"
        return MarketData(
            price=price,
            diluted_shares=shares,
            market_cap=cap if cap is not None else price * shares,
            price_source="reported",
            shares_source="reported",
            market_cap_source=cap_source,
        )
    if cap is not None and shares is not None:
        return MarketData(
            price=cap / shares,
            diluted_shares=shares,
            market_cap=cap,
            price_source="derived",
            shares_source="reported",
            market_cap_source="reported",
        )
    if cap is not None and price is not None:
        return MarketData(
            price=price,
            diluted_shares=cap / price,
            market_cap=cap,
            price_source="reported",
            shares_source="derived",
            market_cap_source="reported",
        )
    missing = [n for n in ("price", "diluted_shares", "market_cap") if getattr(company, n) is None]
    raise FinanceError(
        f"{company.ticker}: cannot value per share without two of price, diluted_shares, market_cap "
        f"(missing: {', '.join(missing)})"
    )
