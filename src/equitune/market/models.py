"""The typed company record every stage of equitune reads.

Units, everywhere in equitune: money in **millions** of the record's currency, share counts in **millions**,
per-share figures (price, EPS, dividends per share) in currency units, ratios as fractions (0.25 = 25%).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GICS_SECTORS: tuple[str, ...] = (
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Information Technology",
    "Materials",
    "Real Estate",
    "Utilities",
)

# Fiscal-year-end months as records spell them.
MONTHS: tuple[str, ...] = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# Line items of one fiscal year: income statement, then cash flow, then balance sheet.
FISCAL_FIELDS: tuple[str, ...] = (
    "revenue",
    "gross_profit",
    "operating_income",
    "depreciation_amortization",
    "ebitda",
    "interest_expense",
    "pretax_income",
    "income_tax_expense",
    "net_income",
    "eps_diluted",
    "operating_cash_flow",
    "capex",
    "free_cash_flow",
    "cash",
    "total_debt",
    "total_equity",
    "total_assets",
    "dividends_per_share",
    "net_interest_income",
    "provision_for_credit_losses",
    "common_equity",
    "tangible_common_equity",
    "cet1_ratio",
)

# The line items the product promises for every fiscal year of a complete record.
REQUIRED_FISCAL_FIELDS: tuple[str, ...] = (
    "revenue",
    "gross_profit",
    "operating_income",
    "ebitda",
    "net_income",
    "eps_diluted",
    "operating_cash_flow",
    "capex",
    "free_cash_flow",
    "cash",
    "total_debt",
    "total_equity",
    "dividends_per_share",
)

# Banks and insurers report no gross profit, EBITDA or capex that means anything: debt and deposits are their
# raw material. Their records promise what their valuation (book value against return on equity) and a
# reader's checks (net interest income, provisions, capital) need instead.
REQUIRED_BANK_FIELDS: tuple[str, ...] = (
    "revenue",
    "net_interest_income",
    "provision_for_credit_losses",
    "pretax_income",
    "net_income",
    "eps_diluted",
    "total_equity",
    "common_equity",
    "total_assets",
    "dividends_per_share",
    "cet1_ratio",
)
REQUIRED_INSURER_FIELDS: tuple[str, ...] = (
    "revenue",
    "pretax_income",
    "net_income",
    "eps_diluted",
    "total_equity",
    "common_equity",
    "total_assets",
    "dividends_per_share",
)

# GICS sub-industries whose companies are balance-sheet lenders or underwriters.
BANK_SUB_INDUSTRIES: frozenset[str] = frozenset(
    {"diversified banks", "regional banks", "investment banking & brokerage", "diversified capital markets"}
)
INSURER_SUB_INDUSTRIES: frozenset[str] = frozenset(
    {
        "property & casualty insurance",
        "multi-line insurance",
        "life & health insurance",
        "reinsurance",
        "insurance brokers",
        "multi-sector holdings",
    }
)

InstitutionKind = Literal["bank", "insurer"]


def institution_kind(sub_industry: str) -> InstitutionKind | None:
    """'bank' or 'insurer' for a GICS sub-industry of lenders or underwriters, else ``None``."""
    key = sub_industry.strip().casefold()
    if key in BANK_SUB_INDUSTRIES:
        return "bank"
    if key in INSURER_SUB_INDUSTRIES and key != "insurance brokers":
        return "insurer"
    return None


class FiscalYear(BaseModel):
    """One fiscal year of reported figures (money in millions, per-share in currency units).

    A field is ``None`` when the source does not report it; a record with a missing required field is
    *incomplete* (see ``Company.missing_fields``), never silently filled in.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fiscal_year: int = Field(description="Fiscal year label as the company uses it (e.g. 2024 for FY2024).")
    period_end: dt.date | None = Field(None, description="Last day of the fiscal year, when the source says.")
    revenue: float | None = Field(None, description="Total revenue / net sales.")
    gross_profit: float | None = Field(None, description="Revenue less cost of revenue.")
    operating_income: float | None = Field(None, description="Operating income (EBIT) as reported.")
    depreciation_amortization: float | None = Field(None, description="D&A from the cash-flow statement.")
    ebitda: float | None = Field(None, description="Operating income plus depreciation and amortisation.")
    interest_expense: float | None = Field(None, description="Interest expense (positive number).")
    pretax_income: float | None = Field(None, description="Income before income taxes.")
    income_tax_expense: float | None = Field(None, description="Provision for income taxes.")
    net_income: float | None = Field(None, description="Net income attributable to the company.")
    eps_diluted: float | None = Field(None, description="Diluted earnings per share.")
    operating_cash_flow: float | None = Field(None, description="Net cash from operating activities.")
    capex: float | None = Field(None, description="Capital expenditure (positive number).")
    free_cash_flow: float | None = Field(None, description="Operating cash flow less capital expenditure.")
    cash: float | None = Field(None, description="Cash, cash equivalents and short-term investments.")
    total_debt: float | None = Field(None, description="Short- plus long-term debt (excluding operating leases).")
    total_equity: float | None = Field(None, description="Shareholders' equity attributable to the company.")
    total_assets: float | None = Field(None, description="Total assets.")
    dividends_per_share: float | None = Field(None, description="Dividends declared per share.")
    net_interest_income: float | None = Field(None, description="Banks: interest income less interest expense.")
    provision_for_credit_losses: float | None = Field(None, description="Banks: provision for credit losses.")
    common_equity: float | None = Field(
        None, description="Banks and insurers: common shareholders' equity (total equity less preferred stock)."
    )
    tangible_common_equity: float | None = Field(
        None, description="Banks: common equity less goodwill and intangibles (net of deferred tax)."
    )
    cet1_ratio: float | None = Field(None, description="Banks: Common Equity Tier 1 capital ratio (fraction).")

    def missing(self, fields: tuple[str, ...] = REQUIRED_FISCAL_FIELDS) -> list[str]:
        """Names of the given fields that are not reported for this year."""
        return [name for name in fields if getattr(self, name) is None]


class Company(BaseModel):
    """A company's identity, market data and at least one fiscal year of fundamentals.

    ``financials`` is ordered newest first. ``source`` says where the figures come from (for example
    "FY2024 Form 10-K"), ``as_of`` when the record was taken.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticker: str = Field(description="Exchange ticker, upper case, dots for share classes (BRK.B).")
    name: str = Field(description="Company name.")
    sector: str = Field(description="GICS sector.")
    sub_industry: str = Field(description="GICS sub-industry.")
    currency: str = Field("USD", description="ISO currency of all money fields.")
    fiscal_year_end: str = Field(description="Month in which the fiscal year ends, e.g. 'December'.")
    cik: int | None = Field(None, description="SEC Central Index Key, when known.")
    price: float | None = Field(None, gt=0, description="Share price in currency units.")
    price_date: dt.date | None = Field(None, description="Date of the share price.")
    diluted_shares: float | None = Field(None, gt=0, description="Diluted shares, millions.")
    market_cap: float | None = Field(None, gt=0, description="Market capitalisation, millions.")
    beta: float | None = Field(None, description="Equity beta against the broad market.")
    source: str = Field(description="Where the figures come from, e.g. 'FY2024 Form 10-K'.")
    as_of: dt.date = Field(description="Date the record describes.")
    financials: list[FiscalYear] = Field(default_factory=list, description="Fiscal years, newest first.")
    status: Literal["complete", "partial"] = Field(
        "complete", description="'partial' when a required figure is missing (see missing_fields)."
    )
    notes: list[str] = Field(default_factory=list, description="Caveats about the record's figures.")

    @model_validator(mode="after")
    def _newest_first(self) -> Company:
        years = [fy.fiscal_year for fy in self.financials]
        if years != sorted(years, reverse=True) or len(set(years)) != len(years):
            raise ValueError(f"{self.ticker}: financials must be distinct fiscal years, newest first; got {years}")
        return self

    @property
    def institution(self) -> InstitutionKind | None:
        """'bank' or 'insurer' when the sub-industry is one of lenders or underwriters, else ``None``."""
        return institution_kind(self.sub_industry)

    @property
    def required_fiscal_fields(self) -> tuple[str, ...]:
        """The line items a complete record of this kind of company reports for each fiscal year."""
        return {"bank": REQUIRED_BANK_FIELDS, "insurer": REQUIRED_INSURER_FIELDS}.get(
            self.institution or "", REQUIRED_FISCAL_FIELDS
        )

    @property
    def latest(self) -> FiscalYear:
        """The newest fiscal year; raises when the record has none."""
        if not self.financials:
            raise ValueError(f"{self.ticker} has no fiscal-year figures")
        return self.financials[0]

    @property
    def prior(self) -> FiscalYear | None:
        """The fiscal year before the newest, when present."""
        return self.financials[1] if len(self.financials) > 1 else None

    def missing_fields(self, years: int = 2) -> list[str]:
        """Required figures absent from the record, as 'FY2024.gross_profit', 'price', ... ."""
        missing = [name for name in ("price", "diluted_shares", "market_cap", "beta") if getattr(self, name) is None]
        if len(self.financials) < years:
            missing.append(f"financials (have {len(self.financials)} of {years} fiscal years)")
        for fy in self.financials[:years]:
            missing.extend(f"FY{fy.fiscal_year}.{name}" for name in fy.missing(self.required_fiscal_fields))
        return missing
