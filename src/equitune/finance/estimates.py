"""Next-fiscal-year estimates for the estimates table, by a stated constant-margin method.

Revenue is the DCF's first projected year (historical growth, bounded, as in the DCF); EBITDA and net margins
are held at the latest reported year; EPS = estimated net income / diluted shares; P/E = price / EPS.
"""

from __future__ import annotations

from pydantic import Field

from equitune.finance.analysis import CompanyAnalysis
from equitune.finance.base import ResultModel
from equitune.market.models import Company

METHOD = (
    "next-year revenue from the DCF's first projected year; EBITDA and net margins held at the latest "
    "fiscal year; EPS = estimated net income / diluted shares; P/E = price / EPS"
)


class YearEstimate(ResultModel):
    """One column of an estimates table: reported (``estimate=False``) or estimated."""

    fiscal_year: int = Field(description="Fiscal-year label.")
    estimate: bool = Field(description="True for an estimate, False for reported figures.")
    revenue: float = Field(description="Revenue, millions.")
    revenue_growth: float | None = Field(description="Growth over the previous fiscal year.")
    ebitda: float | None = Field(description="EBITDA, millions.")
    ebitda_margin: float | None = Field(description="EBITDA / revenue.")
    net_income: float | None = Field(description="Net income, millions.")
    eps: float | None = Field(description="Diluted EPS.")
    pe: float | None = Field(description="Price / EPS (None when EPS <= 0).")


class Estimates(ResultModel):
    """Last reported fiscal year and the next-year estimate."""

    reported: YearEstimate
    next_year: YearEstimate
    method: str = Field(default=METHOD, description="How the estimate is formed.")


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def next_year_estimates(company: Company, analysis: CompanyAnalysis) -> Estimates:
    """The reported latest year and a constant-margin estimate of the next one (see ``METHOD``)."""
    fy = company.latest
    price = analysis.market.price
    shares = analysis.market.diluted_shares
    revenue = fy.revenue or 0.0
    ebitda_margin = _ratio(fy.ebitda, fy.revenue)
    net_margin = _ratio(fy.net_income, fy.revenue)
    reported = YearEstimate(
        fiscal_year=fy.fiscal_year,
        estimate=False,
        revenue=revenue,
        revenue_growth=analysis.ratios.revenue_growth,
        ebitda=fy.ebitda,
        ebitda_margin=ebitda_margin,
        net_income=fy.net_income,
        eps=fy.eps_diluted,
        pe=_ratio(price, fy.eps_diluted) if fy.eps_diluted and fy.eps_diluted > 0 else None,
    )
    if analysis.dcf is not None:
        first = analysis.dcf.projection[0]
        next_revenue, growth = first.revenue, first.revenue_growth
    else:
        growth = analysis.ratios.revenue_growth or 0.0
        next_revenue = revenue * (1 + growth)
    net_income = next_revenue * net_margin if net_margin is not None else None
    eps = net_income / shares if net_income is not None else None
    estimate = YearEstimate(
        fiscal_year=fy.fiscal_year + 1,
        estimate=True,
        revenue=next_revenue,
        revenue_growth=growth,
        ebitda=next_revenue * ebitda_margin if ebitda_margin is not None else None,
        ebitda_margin=ebitda_margin,
        net_income=net_income,
        eps=eps,
        pe=_ratio(price, eps) if eps is not None and eps > 0 else None,
    )
    return Estimates(reported=reported, next_year=estimate)
