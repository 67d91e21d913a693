"""Weighted average cost of capital: CAPM cost of equity, after-tax cost of debt, market-value weights.

WACC = E/(E+D) * (rf + beta * ERP) + D/(E+D) * Kd * (1 - t), with E the market capitalisation and D the
latest reported total debt (book value, the usual stand-in for the market value of debt). The beta is the record's
raw regression beta adjusted toward 1.0 (Blume, "On the Assessment of Risk", Journal of Finance 1971: betas regress
toward the mean, ``adjusted = 2/3 * raw + 1/3``, the adjustment Bloomberg's "adjusted beta" applies).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from equitune.errors import FinanceError
from equitune.finance.assumptions import ValuationAssumptions
from equitune.finance.base import ResultModel, clamp, positive_div
from equitune.finance.inputs import latest_year, market_data
from equitune.market.models import Company, FiscalYear

TaxRateSource = Literal["override", "effective", "effective_limited", "fallback"]
CostOfDebtSource = Literal["override", "implied", "implied_limited", "fallback"]


class WACCResult(ResultModel):
    """Every input and output of the WACC computation, so a report can show each assumption."""

    risk_free_rate: float = Field(description="Risk-free rate used in CAPM.")
    equity_risk_premium: float = Field(description="Equity risk premium used in CAPM.")
    raw_beta: float = Field(description="Beta of the record (or the default) before adjustment.")
    beta_adjustment: str = Field(description="'blume' (2/3 * raw + 1/3) or 'none'.")
    beta: float = Field(description="Equity beta used in CAPM (adjusted).")
    beta_source: Literal["reported", "default"] = Field(description="'default' = the assumptions' default_beta.")
    cost_of_equity: float = Field(description="rf + beta * ERP.")
    pre_tax_cost_of_debt: float = Field(description="Kd before tax.")
    cost_of_debt_source: CostOfDebtSource = Field(description="Where Kd comes from (see the notes).")
    tax_rate: float = Field(description="Tax rate applied to the cost of debt (and to NOPAT in ROIC).")
    tax_rate_source: TaxRateSource = Field(description="Where the tax rate comes from (see the notes).")
    after_tax_cost_of_debt: float = Field(description="Kd * (1 - t).")
    equity_value: float = Field(description="Market value of equity E (market capitalisation), millions.")
    debt_value: float = Field(description="Debt D (latest total debt; 0 when not reported), millions.")
    equity_weight: float = Field(description="E / (E + D).")
    debt_weight: float = Field(description="D / (E + D).")
    wacc: float = Field(description="Weighted average cost of capital.")
    notes: list[str] = Field(default_factory=list, description="How each input was chosen, in words.")


def cost_of_equity(risk_free_rate: float, beta: float, equity_risk_premium: float) -> float:
    """CAPM cost of equity: ``risk_free_rate + beta * equity_risk_premium``."""
    return risk_free_rate + beta * equity_risk_premium


def adjusted_beta(raw_beta: float, method: str = "blume") -> float:
    """The beta CAPM uses: Blume's ``2/3 * raw + 1/3`` (``method='blume'``) or the raw beta (``'none'``)."""
    if method == "none":
        return raw_beta
    if method == "blume":
        return 2.0 / 3.0 * raw_beta + 1.0 / 3.0
    raise FinanceError(f"unknown beta adjustment '{method}' (blume or none)")


def after_tax_cost_of_debt(pre_tax_cost_of_debt: float, tax_rate: float) -> float:
    """Cost of debt net of the interest tax shield: ``pre_tax_cost_of_debt * (1 - tax_rate)``."""
    return pre_tax_cost_of_debt * (1.0 - tax_rate)


def weighted_average_cost_of_capital(
    equity_value: float, debt_value: float, cost_of_equity: float, after_tax_cost_of_debt: float
) -> float:
    """``E/(E+D) * Ke + D/(E+D) * Kd_after_tax``; raises ``FinanceError`` unless E > 0 and D >= 0."""
    if equity_value <= 0 or debt_value < 0:
        raise FinanceError(f"WACC needs equity > 0 and debt >= 0 (got equity {equity_value}, debt {debt_value})")
    total = equity_value + debt_value
    return equity_value / total * cost_of_equity + debt_value / total * after_tax_cost_of_debt


def resolve_tax_rate(year: FiscalYear, assumptions: ValuationAssumptions) -> tuple[float, TaxRateSource, str]:
    """The tax rate for ``year``: the override, else the effective rate (tax / pretax income) limited to the
    configured range, else the fallback when pretax income is not positive or either figure is missing.
    Returns the rate, its source and a sentence saying how it was chosen."""
    a = assumptions
    if a.tax_rate is not None:
        return a.tax_rate, "override", f"tax rate {a.tax_rate:.1%} set in the assumptions"
    effective = positive_div(year.income_tax_expense, year.pretax_income)
    if effective is None:
        return (
            a.fallback_tax_rate,
            "fallback",
            f"tax rate {a.fallback_tax_rate:.1%} (fallback: pretax income not positive or not reported)",
        )
    limited = clamp(effective, a.min_tax_rate, a.max_tax_rate)
    if limited != effective:
        return (
            limited,
            "effective_limited",
            f"tax rate {limited:.1%}: effective rate {effective:.1%} limited to "
            f"[{a.min_tax_rate:.1%}, {a.max_tax_rate:.1%}]",
        )
    return effective, "effective", f"tax rate {effective:.1%} = effective rate FY{year.fiscal_year}"


def resolve_cost_of_debt(year: FiscalYear, assumptions: ValuationAssumptions) -> tuple[float, CostOfDebtSource, str]:
    """The pre-tax cost of debt: the override, else interest expense / total debt of ``year`` limited to the
    configured range, else risk-free rate + credit spread when interest or debt is not reported (or zero).
    Returns the rate, its source and a sentence saying how it was chosen."""
    a = assumptions
    if a.cost_of_debt is not None:
        return a.cost_of_debt, "override", f"cost of debt {a.cost_of_debt:.2%} set in the assumptions"
    implied = positive_div(year.interest_expense, year.total_debt)
    if implied is None or implied <= 0:
        rate = a.risk_free_rate + a.credit_spread
        return (
            rate,
            "fallback",
            f"cost of debt {rate:.2%} = risk-free {a.risk_free_rate:.2%} + spread {a.credit_spread:.2%} "
            "(interest expense or debt not reported)",
        )
    limited = clamp(implied, a.min_cost_of_debt, a.max_cost_of_debt)
    if limited != implied:
        return (
            limited,
            "implied_limited",
            f"cost of debt {limited:.2%}: interest/debt {implied:.2%} limited to "
            f"[{a.min_cost_of_debt:.2%}, {a.max_cost_of_debt:.2%}]",
        )
    return (
        implied,
        "implied",
        f"cost of debt {implied:.2%} = interest expense / total debt FY{year.fiscal_year}",
    )


def compute_wacc(company: Company, assumptions: ValuationAssumptions | None = None) -> WACCResult:
    """The company's WACC with every input recorded: CAPM cost of equity with the reported beta (or the
    default), the resolved pre-tax cost of debt and tax rate, and weights from market capitalisation and the
    latest total debt. Raises ``FinanceError`` when the record has no fiscal year or no market value."""
    a = assumptions or ValuationAssumptions()
    year = latest_year(company)
    market = market_data(company)
    notes: list[str] = []

    raw = company.beta if company.beta is not None else a.default_beta
    beta_source: Literal["reported", "default"] = "reported" if company.beta is not None else "default"
    if beta_source == "default":
        notes.append(f"beta not reported; default beta {a.default_beta:.2f} used")
    # The default beta is the market's own, not a regression estimate: nothing to pull toward 1.0.
    beta = adjusted_beta(raw, a.beta_adjustment) if beta_source == "reported" else raw
    ke = cost_of_equity(a.risk_free_rate, beta, a.equity_risk_premium)

    kd, kd_source, kd_note = resolve_cost_of_debt(year, a)
    tax, tax_source, tax_note = resolve_tax_rate(year, a)
    notes.extend([kd_note, tax_note])
    if beta_source == "reported" and a.beta_adjustment == "blume":
        notes.append(f"beta {beta:.2f}: reported beta {raw:.2f} adjusted toward 1.0 (Blume: 2/3 x {raw:.2f} + 1/3)")
    if "equity_risk_premium" in a.model_fields_set:
        notes.append(f"equity risk premium {a.equity_risk_premium:.2%} set in the assumptions")
    else:
        notes.append(f"equity risk premium {a.equity_risk_premium:.2%}: Damodaran's implied ERP on 2025-01-01")
    kd_after = after_tax_cost_of_debt(kd, tax)

    debt = year.total_debt
    if debt is None:
        notes.append("total debt not reported; treated as 0 (all-equity weights)")
        debt = 0.0
    debt = max(debt, 0.0)
    equity = market.market_cap
    wacc = weighted_average_cost_of_capital(equity, debt, ke, kd_after)
    return WACCResult(
        risk_free_rate=a.risk_free_rate,
        equity_risk_premium=a.equity_risk_premium,
        raw_beta=raw,
        beta_adjustment=a.beta_adjustment if beta_source == "reported" else "none",
        beta=beta,
        beta_source=beta_source,
        cost_of_equity=ke,
        pre_tax_cost_of_debt=kd,
        cost_of_debt_source=kd_source,
        tax_rate=tax,
        tax_rate_source=tax_source,
        after_tax_cost_of_debt=kd_after,
        equity_value=equity,
        debt_value=debt,
        equity_weight=equity / (equity + debt),
        debt_weight=debt / (equity + debt),
        wacc=wacc,
        notes=notes,
    )
