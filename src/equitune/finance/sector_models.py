"""Valuation methods for the businesses a free-cash-flow DCF describes badly, and the choice of method by sector.

* **Banks and insurers** (GICS sub-industries of lenders, brokers and underwriters): debt and deposits are their
  raw material, so free cash flow to the firm and enterprise value have no meaning. They are valued on book
  value against the return it earns: the single-stage **excess-return model** (Damodaran, *Investment
  Valuation*, 3rd ed., ch. 21; the CFA Institute's "justified P/B")::

      equity value = BV + (ROE - ke) x BV / (ke - g)  =  BV x (ROE - g) / (ke - g)

  with BV the common equity of the latest year, ROE = net income / average total equity of the latest two
  year-ends (net income before preferred dividends), ke the CAPM cost of equity and g the terminal growth. The
  value per share is BV per diluted share x the justified P/B ``(ROE - g) / (ke - g)``.
* **Utilities and REITs**: regulated returns and distribution rules make the dividend the cash flow to the
  owner. They are valued with a **two-stage dividend-discount model** (Gordon 1962; Damodaran ch. 13):
  dividends per share grow at g0 for ``high_growth_years``, fade linearly to the terminal growth g by year
  N = ``explicit_years``, and are worth ``D_N+1 / (ke - g)`` after; g0 is the sustainable growth
  ``(1 - payout) x ROE`` limited to the range between the historical dividend growth and g (and to
  ``[min_initial_growth, max_initial_growth]``). REITs would be valued on P/FFO where FFO is reported; the
  records do not carry it, so the dividend-discount model is used and the output says so.
* Every other company: the DCF (``finance.dcf``).

A value that is not positive is not meaningful: it is excluded from the price target with its reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from equitune.errors import FinanceError
from equitune.finance.assumptions import ValuationAssumptions
from equitune.finance.base import ResultModel, clamp, number_word, positive_div
from equitune.finance.dcf import SensitivityTable, staged_growth_path
from equitune.finance.inputs import latest_year, market_data
from equitune.finance.ratios import cagr
from equitune.market.models import Company

IntrinsicMethod = Literal["dcf", "excess_return", "ddm"]

METHOD_LABELS: dict[str, str] = {
    "dcf": "DCF",
    "excess_return": "excess-return (justified P/B)",
    "ddm": "dividend-discount",
}


def intrinsic_method(company: Company) -> tuple[IntrinsicMethod, str]:
    """The intrinsic valuation method suited to ``company`` and why, in words."""
    if company.institution == "bank":
        return (
            "excess_return",
            "a bank, whose deposits and debt are its raw material, so it is valued on book value against ROE",
        )
    if company.institution == "insurer":
        return (
            "excess_return",
            "an insurer, whose float and investments are operating assets, so it is valued on book value against ROE",
        )
    if company.sector == "Utilities":
        return "ddm", "a regulated utility, whose dividend, paid out of an allowed return, is the owner's cash flow"
    if company.sector == "Real Estate":
        return (
            "ddm",
            "a REIT, which must distribute most of its income, so the dividend is the owner's cash flow (FFO is not "
            "in the record)",
        )
    return "dcf", "free cash flow describes the business, so it is valued with a DCF"


class ExcessReturnValuation(ResultModel):
    """Book value against the return it earns: justified P/B and the value per share it gives."""

    method: Literal["excess_return"] = "excess_return"
    book_value: float = Field(description="Common equity of the latest year, millions.")
    book_value_per_share: float = Field(description="Common equity / diluted shares.")
    roe: float = Field(description="Net income / average total equity (latest two year-ends).")
    cost_of_equity: float = Field(description="CAPM cost of equity.")
    growth: float = Field(description="Long-run growth of book value and earnings.")
    roe_spread: float = Field(description="ROE - ke: the excess return on each dollar of book value.")
    justified_pb: float = Field(description="(ROE - g) / (ke - g).")
    excess_return: float = Field(description="(ROE - ke) x book value, millions a year.")
    value_per_share: float = Field(description="book_value_per_share x justified_pb.")
    current_pb: float = Field(description="Price / book value per share.")
    meaningful: bool = Field(description="True when the value per share is positive.")
    issues: list[str] = Field(default_factory=list)
    formula: str = "value = BV x (ROE - g) / (ke - g) = BV + (ROE - ke) x BV / (ke - g)"
    sensitivity: SensitivityTable | None = Field(
        default=None, description="Value per share by cost of equity (rows) and growth (columns)."
    )
    implied_roe: float | None = Field(default=None, description="Sustained ROE the share price needs.")


class DividendYear(ResultModel):
    year: int
    growth: float
    dividend: float
    dividend_present_value: float


class DividendDiscountValuation(ResultModel):
    """Two-stage dividend-discount model."""

    method: Literal["ddm"] = "ddm"
    dividend: float = Field(description="Dividends per share of the latest year.")
    payout_ratio: float | None = Field(description="Dividends / net income, latest year.")
    roe: float | None = Field(description="Net income / average total equity.")
    sustainable_growth: float | None = Field(description="(1 - payout) x ROE.")
    historical_growth: float | None = Field(description="Dividend-per-share growth over the record's years.")
    initial_growth: float = Field(description="Dividend growth of the first years.")
    terminal_growth: float = Field(description="Growth after year N.")
    cost_of_equity: float = Field(description="CAPM cost of equity (the discount rate).")
    projection: list[DividendYear]
    pv_dividends: float = Field(description="Present value of the explicit-period dividends.")
    terminal_value_per_share: float = Field(description="D_N+1 / (ke - g) at the end of year N.")
    pv_terminal_value_per_share: float
    value_per_share: float
    meaningful: bool
    issues: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    sensitivity: SensitivityTable | None = Field(
        default=None, description="Value per share by cost of equity (rows) and terminal growth (columns)."
    )
    implied_dividend_growth: float | None = Field(
        default=None, description="First-years dividend growth at which the value equals the share price."
    )


def _roe(company: Company) -> float | None:
    fy = latest_year(company)
    equities = [y.total_equity for y in company.financials[:2] if y.total_equity is not None]
    if fy.net_income is None or not equities:
        return None
    return positive_div(fy.net_income, sum(equities) / len(equities)) if sum(equities) > 0 else None


def excess_return_value(
    company: Company, cost_of_equity: float, assumptions: ValuationAssumptions | None = None
) -> ExcessReturnValuation:
    """Justified P/B value of a bank or insurer (see the module docstring). Raises ``FinanceError`` when the
    record has no positive common equity or net income, or when ke <= g."""
    a = assumptions or ValuationAssumptions()
    fy = latest_year(company)
    shares = market_data(company).diluted_shares
    book = fy.common_equity if fy.common_equity is not None else fy.total_equity
    if book is None or book <= 0:
        raise FinanceError(f"{company.ticker}: the excess-return model needs positive common equity")
    roe = _roe(company)
    if roe is None:
        raise FinanceError(f"{company.ticker}: the excess-return model needs net income and equity")
    g = a.terminal_growth
    if cost_of_equity <= g:
        raise FinanceError(f"cost of equity {cost_of_equity:.2%} must exceed growth {g:.2%}")
    pb = (roe - g) / (cost_of_equity - g)
    bvps = book / shares
    value = bvps * pb
    issues = [] if value > 0 else [f"ROE {roe:.1%} does not exceed growth {g:.1%}: the model gives no positive value"]
    return ExcessReturnValuation(
        book_value=book,
        book_value_per_share=bvps,
        roe=roe,
        cost_of_equity=cost_of_equity,
        growth=g,
        roe_spread=roe - cost_of_equity,
        justified_pb=pb,
        excess_return=(roe - cost_of_equity) * book,
        value_per_share=value,
        current_pb=market_data(company).price / bvps,
        meaningful=value > 0,
        issues=issues,
    )


def dividend_discount_value(
    company: Company,
    cost_of_equity: float,
    assumptions: ValuationAssumptions | None = None,
    growth_shift: float = 0.0,
    initial_growth: float | None = None,
) -> DividendDiscountValuation:
    """Two-stage dividend-discount value per share (see the module docstring); ``growth_shift`` is added to the
    first-years growth (scenarios), ``initial_growth`` replaces it (the implied-growth solve). Raises
    ``FinanceError`` when the company pays no dividend or ke <= g."""
    a = assumptions or ValuationAssumptions()
    fy = latest_year(company)
    dps = fy.dividends_per_share
    if dps is None or dps <= 0:
        raise FinanceError(f"{company.ticker}: the dividend-discount model needs a dividend")
    g = a.terminal_growth
    if cost_of_equity <= g:
        raise FinanceError(f"cost of equity {cost_of_equity:.2%} must exceed growth {g:.2%}")
    shares = market_data(company).diluted_shares
    payout = positive_div(dps * shares, fy.net_income) if fy.net_income is not None else None
    roe = _roe(company)
    sustainable = (1.0 - payout) * roe if payout is not None and roe is not None else None
    history = [y.dividends_per_share for y in company.financials if y.dividends_per_share is not None]
    hist = cagr(history[-1], history[0], len(history) - 1) if len(history) >= 2 else None
    notes: list[str] = []
    low, high = a.min_initial_growth, a.max_initial_growth
    if hist is not None:
        low, high = max(low, min(hist, g)), min(high, max(hist, g))
    if sustainable is not None:
        initial = clamp(sustainable, low, max(low, high))
        limited = "" if initial == sustainable else f", limited to [{low:.1%}, {max(low, high):.1%}]"
        notes.append(
            f"dividend growth {initial:.1%} for {a.high_growth_years} years: (1 - payout {payout:.0%}) x ROE "
            f"{roe:.1%} = {sustainable:.1%}{limited}"
        )
    elif hist is not None:
        initial = clamp(hist, a.min_initial_growth, a.max_initial_growth)
        notes.append(f"dividend growth {initial:.1%}: historical dividend growth (no positive earnings for payout)")
    else:
        initial = g
        notes.append(f"dividend growth held at the terminal growth {g:.1%}")
    if initial_growth is not None:
        initial = initial_growth
    elif growth_shift:
        initial += growth_shift
        notes.append(f"scenario: first-years growth moved by {growth_shift:+.1%} to {initial:.1%}")
    n = a.explicit_years
    rates = staged_growth_path(initial, g, n, a.high_growth_years)
    projection, dividend = [], dps
    for t, rate in enumerate(rates, start=1):
        dividend *= 1.0 + rate
        projection.append(
            DividendYear(
                year=t, growth=rate, dividend=dividend, dividend_present_value=dividend * (1 + cost_of_equity) ** -t
            )
        )
    terminal = dividend * (1.0 + g) / (cost_of_equity - g)
    pv_terminal = terminal * (1 + cost_of_equity) ** -n
    pv_dividends = sum(p.dividend_present_value for p in projection)
    value = pv_dividends + pv_terminal
    return DividendDiscountValuation(
        dividend=dps,
        payout_ratio=payout,
        roe=roe,
        sustainable_growth=sustainable,
        historical_growth=hist,
        initial_growth=initial,
        terminal_growth=g,
        cost_of_equity=cost_of_equity,
        projection=projection,
        pv_dividends=pv_dividends,
        terminal_value_per_share=terminal,
        pv_terminal_value_per_share=pv_terminal,
        value_per_share=value,
        meaningful=value > 0,
        notes=notes,
    )


def implied_expectation(
    company: Company,
    cost_of_equity: float,
    assumptions: ValuationAssumptions,
    excess: ExcessReturnValuation | None,
    ddm: DividendDiscountValuation | None,
    price: float,
) -> tuple[float | None, str | None]:
    """What the share price implies under the sector model, and the sentence that says it: the ROE a bank's or
    insurer's price to book needs (``ROE = g + P/B x (ke - g)``), or the first-years dividend growth at which
    the dividend-discount value equals the price (by bisection on [-50%, +100%])."""
    if excess is not None:
        needed = excess.growth + excess.current_pb * (cost_of_equity - excess.growth)
        return needed, (
            f"Implied return: the ${price:,.2f} share price ({excess.current_pb:.2f}x book) needs a sustained ROE of "
            f"{needed:.1%} at a {cost_of_equity:.1%} cost of equity and {excess.growth:.1%} growth "
            f"(the record's ROE is {excess.roe:.1%})."
        )
    if ddm is None:
        return None, None

    def value_at(g0: float) -> float:
        return dividend_discount_value(company, cost_of_equity, assumptions, initial_growth=g0).value_per_share

    low, high = -0.5, 1.0
    if not value_at(low) <= price <= value_at(high):
        return None, (
            f"Implied growth: no first-years dividend growth between {low:.0%} and {high:.0%} gives the "
            f"${price:,.2f} price."
        )
    for _ in range(60):
        mid = (low + high) / 2.0
        if value_at(mid) < price:
            low = mid
        else:
            high = mid
    needed = (low + high) / 2.0
    return needed, (
        f"Implied growth: the ${price:,.2f} share price needs dividend growth of {needed:.1%} a year for "
        f"{number_word(assumptions.high_growth_years)} years, fading to {ddm.terminal_growth:.1%} by year "
        f"{number_word(assumptions.explicit_years)}, at a {cost_of_equity:.1%} cost of equity (the model uses "
        f"{ddm.initial_growth:.1%})."
    )


def sector_sensitivity(
    company: Company, method: IntrinsicMethod, cost_of_equity: float, assumptions: ValuationAssumptions
) -> SensitivityTable:
    """Value per share of the excess-return or dividend-discount model for cost of equity ``ke + k x step``
    (rows) by growth ``g + k x step`` (columns), k = -steps..steps, the DCF table's steps; ``None`` where
    ke <= g or the model gives no value."""
    a = assumptions
    offsets = range(-a.sensitivity_steps, a.sensitivity_steps + 1)
    rates = [cost_of_equity + k * a.sensitivity_wacc_step for k in offsets]
    growths = [a.terminal_growth + k * a.sensitivity_growth_step for k in offsets]
    values: list[list[float | None]] = []
    for rate in rates:
        row: list[float | None] = []
        for g in growths:
            shifted = a.model_copy(update={"terminal_growth": g})
            try:
                if rate <= g or rate <= 0:
                    raise FinanceError("no finite value")
                result = (
                    excess_return_value(company, rate, shifted)
                    if method == "excess_return"
                    else dividend_discount_value(company, rate, shifted)
                )
                row.append(result.value_per_share)
            except FinanceError:
                row.append(None)
        values.append(row)
    return SensitivityTable(
        wacc_values=rates,
        terminal_growth_values=growths,
        values=values,
        base_row=a.sensitivity_steps,
        base_column=a.sensitivity_steps,
    )
