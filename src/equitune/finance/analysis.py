"""One call that values a company: ratios, WACC, DCF with sensitivity, comparables, target, scenarios.

The recipe, top to bottom: check the record, compute ratios and WACC, value against peers, run the DCF
(with the peers' median EV/EBITDA as the exit multiple unless one is set), blend the price target, run the
scenarios, and collect every caveat. The result holds every assumption used and never NaN or infinity.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from pydantic import Field, model_validator

from equitune.errors import FinanceError
from equitune.finance.assumptions import ValuationAssumptions
from equitune.finance.base import ResultModel, quantile
from equitune.finance.comparables import ComparablesResult, compare_with_peers
from equitune.finance.dcf import DCFInputs, DCFResult, dcf_inputs, run_dcf, sales_to_capital, sensitivity_table
from equitune.finance.inputs import MarketData, check_finite, latest_year, market_data
from equitune.finance.ratios import FinancialRatios, compute_ratios
from equitune.finance.reverse_dcf import ReverseDCF, reverse_dcf
from equitune.finance.sector_models import (
    METHOD_LABELS,
    DividendDiscountValuation,
    ExcessReturnValuation,
    IntrinsicMethod,
    dividend_discount_value,
    excess_return_value,
    implied_expectation,
    intrinsic_method,
    sector_sensitivity,
)
from equitune.finance.target import PriceTarget, Rating, Scenario, price_target, run_scenarios
from equitune.finance.wacc import WACCResult, compute_wacc
from equitune.market.models import Company

# A target below half or above twice the price is reported with a warning: it says more about the assumptions
# (a CAPM WACC from a very low or high beta, peers from a mixed sector) than about the company.
_FAR_BELOW, _FAR_ABOVE = 0.5, 2.0


class CompanyAnalysis(ResultModel):
    """The finance engine's complete output for one company (JSON-serialisable, finite numbers only)."""

    ticker: str
    name: str
    sector: str
    sub_industry: str
    currency: str = Field(description="Currency of every money figure (millions) and per-share figure.")
    fiscal_year: int = Field(description="Latest fiscal year valued.")
    price_date: dt.date | None = Field(description="Date of the share price.")
    as_of: dt.date = Field(description="Date the company record describes.")
    source: str = Field(description="Where the company's figures come from.")
    market: MarketData = Field(description="Price, diluted shares and market cap used.")
    assumptions: ValuationAssumptions = Field(description="Every valuation assumption used.")
    ratios: FinancialRatios
    wacc: WACCResult
    method: IntrinsicMethod = Field(default="dcf", description="Intrinsic method used: 'dcf', 'excess_return', 'ddm'.")
    method_reason: str = Field(default="", description="Why this method suits the company, in words.")
    dcf: DCFResult | None = Field(
        description="DCF with sensitivity table (None when it cannot run or is not the method)."
    )
    dcf_error: str | None = Field(description="Why there is no DCF, when there is none.")
    excess_return: ExcessReturnValuation | None = Field(default=None, description="Banks and insurers' valuation.")
    dividend_discount: DividendDiscountValuation | None = Field(default=None, description="Utilities and REITs'.")
    implied: str | None = Field(default=None, description="What the share price implies under the method, in words.")
    reverse_dcf: ReverseDCF | None = Field(
        default=None, description="Year-1 growth and FCF margin the share price implies under the DCF's model."
    )
    comparables: ComparablesResult
    target: PriceTarget
    scenarios: list[Scenario] = Field(description="Bear, base and bull scenarios.")
    data_notes: list[str] = Field(description="Caveats the company record carries about its figures.")
    warnings: list[str] = Field(description="Every fallback and caveat of this analysis, in words.")
    # The headline numbers again at the top level, for readers of the JSON; checked against ``target``.
    price_target: float | None = Field(description="Price target per share (= target.price_target).")
    upside: float | None = Field(description="price_target / price - 1 (= target.upside).")
    rating: Rating | None = Field(description="Buy / Hold / Sell (= target.rating).")

    @model_validator(mode="after")
    def _consistent_and_finite(self) -> CompanyAnalysis:
        headline = (self.price_target, self.upside, self.rating)
        if headline != (self.target.price_target, self.target.upside, self.target.rating):
            raise ValueError("price_target, upside and rating must equal those of target")
        # allow_inf_nan=False guards each float field; this walk also covers nested lists and dicts.
        bad = _non_finite(self.model_dump(mode="python"), self.ticker)
        if bad:
            raise ValueError(f"non-finite numbers in the analysis: {', '.join(bad[:5])}")
        return self


def _non_finite(value: Any, path: str) -> list[str]:
    if isinstance(value, float):
        return [] if math.isfinite(value) else [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{path}[{i}]")]
    return []


def analyze_company(
    company: Company, universe: list[Company], assumptions: ValuationAssumptions | None = None
) -> CompanyAnalysis:
    """Value ``company``: ratios, WACC, DCF with its WACC x terminal-growth sensitivity, comparables against
    peers drawn from ``universe`` (the company itself is skipped if present), the blended price target,
    upside, rating and bear/base/bull scenarios, with every assumption used. A DCF that cannot run (e.g.
    WACC <= terminal growth, no cash flow) is reported in ``dcf_error`` and the target falls back to the
    comparables value. Raises ``FinanceError`` when the record cannot be valued at all (no fiscal year,
    fewer than two of price / shares / market cap, a non-finite figure)."""
    a = assumptions or ValuationAssumptions()
    check_finite(company)
    fy = latest_year(company)
    market = market_data(company)
    warnings: list[str] = []
    for name, source in (
        ("price", market.price_source),
        ("diluted shares", market.shares_source),
        ("market cap", market.market_cap_source),
    ):
        if source == "derived":
            warnings.append(f"{name} not reported; derived from the other two market figures")
    if company.status == "partial":
        warnings.append(f"partial record; missing: {', '.join(company.missing_fields())}")
    method, method_reason = intrinsic_method(company)
    if method != "dcf":
        warnings.append(f"valued with the {METHOD_LABELS[method]} model, not a DCF: {company.name} is {method_reason}")

    ratios = compute_ratios(company, a)
    wacc = compute_wacc(company, a)
    if wacc.beta_source == "default":
        warnings.append(f"beta not reported; default beta {a.default_beta:.2f} used")

    comps = compare_with_peers(company, universe, a)
    if comps.basis == "sector":
        warnings.append(
            f"{comps.sub_industry_peer_count} peer(s) in the sub-industry (< {a.min_peers}); "
            f"peers drawn from the {company.sector} sector"
        )
    warnings.extend(f"comparables: {issue}" for issue in comps.issues)

    inputs: DCFInputs | None = None
    dcf: DCFResult | None = None
    dcf_error: str | None = None
    implied: ReverseDCF | None = None
    excess: ExcessReturnValuation | None = None
    ddm: DividendDiscountValuation | None = None
    implied_text: str | None = None
    label = METHOD_LABELS[method]
    intrinsic: tuple[IntrinsicMethod, float | None, bool, list[str]]
    if method == "dcf":
        try:
            inputs = dcf_inputs(
                company,
                wacc.wacc,
                a,
                comps.summary("ev_ebitda").median,
                wacc.tax_rate,
                _peer_sales_to_capital(comps, universe),
            )
            dcf = run_dcf(inputs)
            table = sensitivity_table(inputs, a.sensitivity_wacc_step, a.sensitivity_growth_step, a.sensitivity_steps)
            dcf = dcf.model_copy(update={"sensitivity": table})
        except FinanceError as exc:
            dcf_error = str(exc)
            warnings.append(f"DCF could not run: {exc}")
        if dcf is not None:
            warnings.extend(f"DCF: {issue}" for issue in dcf.issues)
        implied = reverse_dcf(inputs, market.price) if inputs is not None and dcf is not None else None
        implied_text = implied.statement() if implied is not None else None
        intrinsic = (
            "dcf",
            dcf.value_per_share if dcf else None,
            dcf is not None and dcf.meaningful,
            list(dcf.issues) if dcf else [dcf_error or "the DCF could not run"],
        )
    else:
        dcf_error = f"not used: {company.name} is {method_reason}"
        try:
            table = sector_sensitivity(company, method, wacc.cost_of_equity, a)
            if method == "excess_return":
                excess = excess_return_value(company, wacc.cost_of_equity, a).model_copy(update={"sensitivity": table})
                value, ok, reasons = excess.value_per_share, excess.meaningful, excess.issues
            else:
                ddm = dividend_discount_value(company, wacc.cost_of_equity, a).model_copy(update={"sensitivity": table})
                value, ok, reasons = ddm.value_per_share, ddm.meaningful, ddm.issues
            implied_value, implied_text = implied_expectation(
                company, wacc.cost_of_equity, a, excess, ddm, market.price
            )
            if excess is not None:
                excess = excess.model_copy(update={"implied_roe": implied_value})
            if ddm is not None:
                ddm = ddm.model_copy(update={"implied_dividend_growth": implied_value})
        except FinanceError as exc:
            value, ok, reasons = None, False, [str(exc)]
            warnings.append(f"{label} model could not run: {exc}")
        intrinsic = (method, value, ok, reasons)

    target = price_target(market.price, dcf, comps, a, intrinsic)
    warnings.extend(target.excluded)
    warnings.extend(target.flags)
    ratio = target.price_target / market.price if target.price_target is not None else None
    if ratio is not None and not _FAR_BELOW <= ratio <= _FAR_ABOVE:
        warnings.append(_far_reason(ratio, company, wacc, comps, target, implied_text))
    intrinsic_at = None
    if method != "dcf" and (excess is not None or ddm is not None):
        intrinsic_at = _intrinsic_at(company, wacc.cost_of_equity, a, method)
    scenarios = run_scenarios(inputs, comps, market.price, a, intrinsic_at, label)

    return CompanyAnalysis(
        ticker=company.ticker,
        name=company.name,
        sector=company.sector,
        sub_industry=company.sub_industry,
        currency=company.currency,
        fiscal_year=fy.fiscal_year,
        price_date=company.price_date,
        as_of=company.as_of,
        source=company.source,
        market=market,
        assumptions=a,
        ratios=ratios,
        wacc=wacc,
        method=method,
        method_reason=method_reason,
        dcf=dcf,
        dcf_error=dcf_error,
        excess_return=excess,
        dividend_discount=ddm,
        implied=implied_text,
        reverse_dcf=implied,
        comparables=comps,
        target=target,
        scenarios=scenarios,
        data_notes=list(company.notes),
        warnings=warnings,
        price_target=target.price_target,
        upside=target.upside,
        rating=target.rating,
    )


def _peer_sales_to_capital(comps: ComparablesResult, universe: list[Company]) -> float | None:
    """Median revenue / invested capital of the comparables' peers with positive invested capital (the
    fundamental DCF's sales-to-capital when the company's own invested capital is not positive)."""
    by_ticker = {c.ticker: c for c in universe}
    ratios = sorted(
        r for p in comps.peers if p.ticker in by_ticker and (r := sales_to_capital(by_ticker[p.ticker])) is not None
    )
    return quantile(ratios, 0.5) if ratios else None


def _intrinsic_at(company: Company, ke: float, a: ValuationAssumptions, method: IntrinsicMethod) -> Any:
    """The sector model re-run under a scenario: the discount rate moves by the shift's WACC change; the
    dividend-discount model's first-years growth by its growth change."""

    def at(shift: Any) -> tuple[float | None, bool, list[str], float | None, float | None]:
        rate = ke + shift.wacc
        try:
            if method == "excess_return":
                er = excess_return_value(company, rate, a)
                return er.value_per_share, er.meaningful, er.issues, None, rate  # growth is not a lever here
            ddm = dividend_discount_value(company, rate, a, growth_shift=shift.revenue_growth)
            return ddm.value_per_share, ddm.meaningful, ddm.issues, ddm.initial_growth, rate
        except FinanceError as exc:
            return None, False, [str(exc)], None, rate

    return at


def _far_reason(
    ratio: float,
    company: Company,
    wacc: WACCResult,
    comps: ComparablesResult,
    target: PriceTarget,
    implied: str | None,
) -> str:
    """Why a target is below half or above twice the price, from the figures behind it."""
    fy = latest_year(company)
    parts = [f"price target is {ratio:.2f}x the share price"]
    if company.price_date is not None and fy.period_end is not None:
        months = (company.price_date - fy.period_end).days / 30.44
        if months >= 6:
            parts.append(
                f"the latest fiscal year ended {fy.period_end.isoformat()}, {months:.0f} months before the price "
                "date, so the price already reflects results the record does not hold"
            )
    parts.append(f"discount rate {wacc.cost_of_equity if target.intrinsic_method != 'dcf' else wacc.wacc:.1%}")
    basis = {"sub_industry": "the sub-industry", "sector": "the sector", "institutions": "banks and insurers"}
    parts.append(f"peers from {basis.get(comps.basis, comps.basis)}")
    own_pe, peer_pe = comps.summary("pe").company_multiple, comps.summary("pe").median
    if own_pe is not None and peer_pe is not None:
        parts.append(f"P/E {own_pe:.1f}x against the peers' median {peer_pe:.1f}x")
    if implied:
        parts.append(implied.rstrip("."))
    return "; ".join(parts)
