"""Invented companies for the finance tests (never shipped as data): round numbers, easy to check by hand.

``make_company()`` is "Testco" (TST): two fiscal years, price 20, 100m diluted shares, market cap 2,000m,
beta 1.2. Its figures, FY2024 (FY2023):

    revenue 1,100 (1,000)   gross profit 440 (380)   operating income 220 (180)   D&A 55 (50)
    EBITDA 275 (230)        interest 20 (20)         pretax 200 (160)             tax 50 (40)
    net income 150 (120)    EPS 1.50 (1.20)          OCF 240 (200)                capex 75 (60)
    FCF 165 (140)           cash 100 (80)            debt 400 (400)               equity 600 (500)
    assets 1,500 (1,400)    DPS 0.60 (0.50)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from equitune.finance import DCFInputs
from equitune.market.models import Company, FiscalYear

FY2024: dict[str, Any] = {
    "fiscal_year": 2024,
    "revenue": 1100.0,
    "gross_profit": 440.0,
    "operating_income": 220.0,
    "depreciation_amortization": 55.0,
    "ebitda": 275.0,
    "interest_expense": 20.0,
    "pretax_income": 200.0,
    "income_tax_expense": 50.0,
    "net_income": 150.0,
    "eps_diluted": 1.50,
    "operating_cash_flow": 240.0,
    "capex": 75.0,
    "free_cash_flow": 165.0,
    "cash": 100.0,
    "total_debt": 400.0,
    "total_equity": 600.0,
    "total_assets": 1500.0,
    "dividends_per_share": 0.60,
}

FY2023: dict[str, Any] = {
    "fiscal_year": 2023,
    "revenue": 1000.0,
    "gross_profit": 380.0,
    "operating_income": 180.0,
    "depreciation_amortization": 50.0,
    "ebitda": 230.0,
    "interest_expense": 20.0,
    "pretax_income": 160.0,
    "income_tax_expense": 40.0,
    "net_income": 120.0,
    "eps_diluted": 1.20,
    "operating_cash_flow": 200.0,
    "capex": 60.0,
    "free_cash_flow": 140.0,
    "cash": 80.0,
    "total_debt": 400.0,
    "total_equity": 500.0,
    "total_assets": 1400.0,
    "dividends_per_share": 0.50,
}


def make_company(
    ticker: str = "TST",
    *,
    latest: dict[str, Any] | None = None,
    prior: dict[str, Any] | None = None,
    years: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> Company:
    """Testco with ``latest`` / ``prior`` merged into FY2024 / FY2023 (``years`` replaces both, newest
    first) and ``fields`` overriding the company-level fields (price, beta, sector, ...)."""
    if years is None:
        years = [{**FY2024, **(latest or {})}, {**FY2023, **(prior or {})}]
    record: dict[str, Any] = {
        "ticker": ticker,
        "name": f"{ticker} Testco",
        "sector": "Industrials",
        "sub_industry": "Widgets",
        "fiscal_year_end": "December",
        "price": 20.0,
        "price_date": dt.date(2024, 12, 31),
        "diluted_shares": 100.0,
        "market_cap": 2000.0,
        "beta": 1.2,
        "source": "invented test fixture",
        "as_of": dt.date(2024, 12, 31),
        "financials": [FiscalYear(**y) for y in years],
    }
    record.update(fields)
    return Company(**record)


def make_peer(
    ticker: str,
    *,
    market_cap: float,
    debt: float,
    cash: float,
    ebitda: float | None,
    revenue: float,
    net_income: float,
    sub_industry: str = "Widgets",
    sector: str = "Industrials",
) -> Company:
    """A one-year peer with just the figures the multiples need (price 10, so shares = market cap / 10)."""
    year = {
        "fiscal_year": 2024,
        "revenue": revenue,
        "ebitda": ebitda,
        "net_income": net_income,
        "cash": cash,
        "total_debt": debt,
        "free_cash_flow": revenue * 0.1,
    }
    return make_company(
        ticker,
        years=[year],
        price=10.0,
        diluted_shares=market_cap / 10.0,
        market_cap=market_cap,
        sub_industry=sub_industry,
        sector=sector,
    )


def widget_peers() -> list[Company]:
    """Three Widgets peers and two others; their multiples, worked out:

    AAA: EV = 1,000 + 200 - 100 = 1,100; EV/EBITDA 1,100/100 = 11; EV/Sales 1,100/550 = 2; P/E 1,000/50 = 20
    BBB: EV = 2,000 + 0 - 200 = 1,800; EV/EBITDA 1,800/200 = 9; EV/Sales 1,800/1,200 = 1.5; P/E 2,000/125 = 16
    CCC: EV = 3,000 + 600 - 0 = 3,600; EV/EBITDA 3,600/300 = 12; EV/Sales 3,600/1,200 = 3; P/E 3,000/100 = 30
    OTH (Industrials, Gadgets) and XOT (another sector) are not Widgets peers.
    """
    return [
        make_peer("AAA", market_cap=1000, debt=200, cash=100, ebitda=100, revenue=550, net_income=50),
        make_peer("BBB", market_cap=2000, debt=0, cash=200, ebitda=200, revenue=1200, net_income=125),
        make_peer("CCC", market_cap=3000, debt=600, cash=0, ebitda=300, revenue=1200, net_income=100),
        make_peer(
            "OTH",
            market_cap=500,
            debt=100,
            cash=100,
            ebitda=50,
            revenue=250,
            net_income=25,
            sub_industry="Gadgets",
        ),
        make_peer(
            "XOT",
            market_cap=800,
            debt=0,
            cash=0,
            ebitda=80,
            revenue=400,
            net_income=40,
            sub_industry="Soft Drinks",
            sector="Consumer Staples",
        ),
    ]


def bank_year(**changes: Any) -> dict[str, Any]:
    """A fiscal year of an invented bank, as ``make_company(latest=..., prior=...)`` takes it: no gross profit,
    EBITDA, capex or cash flows; net income 150 on common equity 1,000 (ROE 15%), net interest income 300,
    provisions 20, CET1 12%."""
    return {
        "gross_profit": None,
        "ebitda": None,
        "capex": None,
        "operating_cash_flow": None,
        "free_cash_flow": None,
        "net_income": 150.0,
        "total_equity": 1000.0,
        "common_equity": 1000.0,
        "net_interest_income": 300.0,
        "provision_for_credit_losses": 20.0,
        "cet1_ratio": 0.12,
        **changes,
    }


def simple_inputs(**changes: object) -> DCFInputs:
    """The DCF worked example of test_dcf.py (3 years, 10% fading to 2%, margin 10%, WACC 10%)."""
    values: dict[str, object] = {
        "ticker": "TST",
        "base_fiscal_year": 2024,
        "base_revenue": 1000.0,
        "initial_growth": 0.10,
        "initial_growth_source": "override",
        "terminal_growth": 0.02,
        "fcf_margin": 0.10,
        "fcf_margin_source": "override",
        "interest_added_back": False,
        "tax_rate": 0.25,
        "ebitda_margin": 0.20,
        "exit_multiple": 8.0,
        "exit_multiple_source": "override",
        "wacc": 0.10,
        "projection_years": 3,
        "mid_year_convention": False,
        "terminal_value_method": "gordon",
        "total_debt": 300.0,
        "cash": 50.0,
        "diluted_shares": 100.0,
    }
    values.update(changes)
    return DCFInputs.model_validate(values)
