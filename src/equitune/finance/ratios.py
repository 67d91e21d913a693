"""Financial ratios of the latest fiscal year (and growth against the year before).

Definitions (all from year-end figures of the latest fiscal year unless said otherwise):

* margins: gross profit, operating income, EBITDA, net income and free cash flow over revenue;
* ROE = net income / total equity; ROA = net income / total assets;
* ROIC = NOPAT / invested capital, NOPAT = operating income * (1 - tax rate) with the tax rate resolved as
  for the WACC, invested capital = total debt + total equity - cash;
* net debt = total debt - cash; net debt / EBITDA; debt / equity;
* interest coverage = operating income (EBIT) / interest expense;
* FCF conversion = free cash flow / net income; dividend payout = dividends per share / diluted EPS;
* growth = this year / last year - 1; CAGR = (end / start) ** (1 / years) - 1.

A ratio is ``None`` when an input is missing, a denominator is zero, or the ratio has no meaning: ROE on
negative equity, margins on non-positive revenue, coverage without reported interest, growth from a
non-positive base, multiples of non-positive EBITDA or earnings. Never NaN or infinity.
"""

from __future__ import annotations

from pydantic import Field

from equitune.finance.assumptions import ValuationAssumptions
from equitune.finance.base import ResultModel, finite_or_none, positive_div
from equitune.finance.inputs import latest_year
from equitune.finance.wacc import TaxRateSource, resolve_tax_rate
from equitune.market.models import Company


class FinancialRatios(ResultModel):
    """Profitability, returns, leverage, cash conversion and growth of the latest fiscal year."""

    fiscal_year: int = Field(description="Fiscal year the ratios describe.")
    prior_fiscal_year: int | None = Field(description="Fiscal year growth is measured against.")
    gross_margin: float | None = Field(description="Gross profit / revenue.")
    operating_margin: float | None = Field(description="Operating income / revenue.")
    ebitda_margin: float | None = Field(description="EBITDA / revenue.")
    net_margin: float | None = Field(description="Net income / revenue.")
    fcf_margin: float | None = Field(description="Free cash flow / revenue.")
    roe: float | None = Field(description="Net income / total equity (None when equity <= 0).")
    roa: float | None = Field(description="Net income / total assets.")
    roic: float | None = Field(
        description="NOPAT / (total debt + total equity - cash); NOPAT = operating income * (1 - tax rate)."
    )
    tax_rate: float = Field(description="Tax rate used for NOPAT (resolved as for the WACC).")
    tax_rate_source: TaxRateSource = Field(description="Where the tax rate comes from.")
    effective_tax_rate: float | None = Field(description="Income tax / pretax income as reported (unlimited).")
    net_debt: float | None = Field(description="Total debt - cash, millions (negative = net cash).")
    net_debt_to_ebitda: float | None = Field(description="Net debt / EBITDA (None when EBITDA <= 0).")
    debt_to_equity: float | None = Field(description="Total debt / total equity (None when equity <= 0).")
    interest_coverage: float | None = Field(
        description="Operating income / interest expense (None when interest is not reported or zero)."
    )
    fcf_conversion: float | None = Field(description="Free cash flow / net income (None when net income <= 0).")
    dividend_payout: float | None = Field(description="Dividends per share / diluted EPS (None when EPS <= 0).")
    revenue_growth: float | None = Field(description="Revenue growth over the prior year.")
    ebitda_growth: float | None = Field(description="EBITDA growth over the prior year (None from EBITDA <= 0).")
    eps_growth: float | None = Field(description="Diluted EPS growth over the prior year (None from EPS <= 0).")
    revenue_cagr: float | None = Field(description="Revenue CAGR over revenue_cagr_years.")
    revenue_cagr_years: int | None = Field(description="Years the revenue CAGR spans (oldest to newest year).")
    # Banks and insurers (None for other companies or when not reported).
    nii_share: float | None = Field(default=None, description="Net interest income / revenue (banks).")
    provision_to_nii: float | None = Field(
        default=None, description="Provision for credit losses / net interest income: credit cost (banks)."
    )
    pretax_margin: float | None = Field(default=None, description="Pretax income / revenue (banks and insurers).")
    equity_to_assets: float | None = Field(default=None, description="Total equity / total assets (banks, insurers).")
    nii_growth: float | None = Field(default=None, description="Net interest income growth over the prior year.")


def growth(current: float | None, previous: float | None) -> float | None:
    """Period-over-period growth ``current / previous - 1``; ``None`` when either is missing or the base is
    not positive (growth from a loss has no meaning)."""
    ratio = positive_div(current, previous)
    return None if ratio is None else ratio - 1.0


def cagr(start: float | None, end: float | None, years: float) -> float | None:
    """Compound annual growth rate ``(end / start) ** (1 / years) - 1``; ``None`` when either value is
    missing, ``start`` is not positive, ``end`` is negative or ``years`` is not positive."""
    if start is None or end is None or start <= 0 or end < 0 or years <= 0:
        return None
    try:
        return finite_or_none((end / start) ** (1.0 / years) - 1.0)
    except OverflowError:
        return None


def revenue_cagr(company: Company, max_years: int) -> tuple[float, int] | None:
    """Revenue CAGR of ``company`` from the oldest of its ``max_years + 1`` newest fiscal years with
    positive revenue to the newest; returns ``(cagr, years spanned)`` or ``None`` with fewer than two such
    years."""
    latest = latest_year(company)
    if latest.revenue is None or latest.revenue <= 0:
        return None
    window = [fy for fy in company.financials[: max_years + 1] if fy.revenue is not None and fy.revenue > 0]
    start = window[-1] if window else None
    if start is None or start.fiscal_year >= latest.fiscal_year:
        return None
    years = latest.fiscal_year - start.fiscal_year
    rate = cagr(start.revenue, latest.revenue, years)
    return None if rate is None else (rate, years)


def compute_ratios(company: Company, assumptions: ValuationAssumptions | None = None) -> FinancialRatios:
    """Ratios of the company's latest fiscal year (growth against the year before). ``assumptions`` only
    decide the tax rate used for ROIC's NOPAT. Raises ``FinanceError`` when the record has no fiscal year."""
    a = assumptions or ValuationAssumptions()
    fy = latest_year(company)
    prior = company.prior
    tax, tax_source, _ = resolve_tax_rate(fy, a)

    net_debt = fy.total_debt - fy.cash if fy.total_debt is not None and fy.cash is not None else None
    invested_capital = (
        fy.total_debt + fy.total_equity - fy.cash
        if fy.total_debt is not None and fy.total_equity is not None and fy.cash is not None
        else None
    )
    nopat = fy.operating_income * (1.0 - tax) if fy.operating_income is not None else None
    history = revenue_cagr(company, max_years=len(company.financials))

    return FinancialRatios(
        fiscal_year=fy.fiscal_year,
        prior_fiscal_year=prior.fiscal_year if prior is not None else None,
        gross_margin=positive_div(fy.gross_profit, fy.revenue),
        operating_margin=positive_div(fy.operating_income, fy.revenue),
        ebitda_margin=positive_div(fy.ebitda, fy.revenue),
        net_margin=positive_div(fy.net_income, fy.revenue),
        fcf_margin=positive_div(fy.free_cash_flow, fy.revenue),
        roe=positive_div(fy.net_income, fy.total_equity),
        roa=positive_div(fy.net_income, fy.total_assets),
        roic=positive_div(nopat, invested_capital),
        tax_rate=tax,
        tax_rate_source=tax_source,
        effective_tax_rate=positive_div(fy.income_tax_expense, fy.pretax_income),
        net_debt=net_debt,
        net_debt_to_ebitda=positive_div(net_debt, fy.ebitda),
        debt_to_equity=positive_div(fy.total_debt, fy.total_equity),
        interest_coverage=positive_div(fy.operating_income, fy.interest_expense),
        fcf_conversion=positive_div(fy.free_cash_flow, fy.net_income),
        dividend_payout=positive_div(fy.dividends_per_share, fy.eps_diluted),
        revenue_growth=growth(fy.revenue, prior.revenue) if prior else None,
        ebitda_growth=growth(fy.ebitda, prior.ebitda) if prior else None,
        eps_growth=growth(fy.eps_diluted, prior.eps_diluted) if prior else None,
        revenue_cagr=history[0] if history else None,
        revenue_cagr_years=history[1] if history else None,
        **_institution_ratios(company),
    )


def _institution_ratios(company: Company) -> dict[str, float | None]:
    """Net interest income share, credit cost, pretax margin and equity / assets of a bank or insurer."""
    if company.institution is None:
        return {}
    fy, prior = latest_year(company), company.prior
    return {
        "nii_share": positive_div(fy.net_interest_income, fy.revenue),
        "provision_to_nii": positive_div(fy.provision_for_credit_losses, fy.net_interest_income),
        "pretax_margin": positive_div(fy.pretax_income, fy.revenue),
        "equity_to_assets": positive_div(fy.total_equity, fy.total_assets),
        "nii_growth": growth(fy.net_interest_income, prior.net_interest_income) if prior is not None else None,
    }
