"""Discounted cash flow: project revenue and free cash flow, add a terminal value, discount, bridge to equity.

The recipe, for projection years t = 1..N (N = ``projection_years``):

* revenue growth starts at g0 in year 1 and falls (or rises) linearly to the terminal growth g in year N:
  ``growth_t = g0 + (g - g0) * (t - 1) / (N - 1)``;
* ``FCF_t = revenue_t * FCF margin`` (margin held constant), a margin of *unlevered* free cash flow:
  reported FCF (operating cash flow less capex) plus interest expense * (1 - tax rate), because the WACC
  already charges for debt and interest must not also reduce the cash flows. A year without reported
  interest adds nothing back; in the Financials sector reported FCF is used as is (interest is an
  operating cost of banks and insurers);
* discount factor ``1 / (1 + WACC) ** t``, or ``** (t - 0.5)`` with the mid-year convention;
* terminal value at the end of year N, both ways: Gordon growth ``FCF_N * (1 + g) / (WACC - g)`` and exit
  multiple ``EBITDA_N * multiple`` (EBITDA_N = revenue_N * historical EBITDA margin). Both are reported; the
  DCF value uses ``terminal_value_method`` (default Gordon) and is discounted with ``1 / (1 + WACC) ** N``;
* enterprise value = sum of discounted FCF + discounted terminal value; equity value = EV - total debt +
  cash; value per share = equity value / diluted shares.

WACC <= g (or WACC <= 0) raises ``FinanceError``: the Gordon formula has no finite value there. A negative
enterprise or equity value is reported as it is, with ``meaningful=False`` and the reason in ``issues``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from equitune.errors import FinanceError
from equitune.finance.assumptions import TerminalValueMethod, ValuationAssumptions
from equitune.finance.base import ResultModel, clamp, finite_or_none, is_finite, positive_div, safe_div
from equitune.finance.inputs import latest_year, market_data
from equitune.finance.ratios import revenue_cagr
from equitune.finance.wacc import resolve_tax_rate
from equitune.market.models import Company, FiscalYear

GrowthSource = Literal["override", "historical_cagr", "historical_cagr_limited", "terminal_growth"]
MarginSource = Literal["override", "historical", "historical_limited"]
MultipleSource = Literal["override", "peer_median", "none"]


class DCFInputs(ResultModel):
    """Everything a DCF run needs, resolved from the company record and the assumptions."""

    ticker: str = Field(description="Company the inputs describe.")
    base_fiscal_year: int = Field(description="Fiscal year the projection starts from (year 0).")
    base_revenue: float = Field(gt=0, description="Revenue of the base year, millions.")
    initial_growth: float = Field(description="Revenue growth in projection year 1.")
    initial_growth_source: GrowthSource = Field(description="Where year-1 growth comes from.")
    terminal_growth: float = Field(description="Growth in the last projected year and in perpetuity.")
    fcf_margin: float = Field(description="Free cash flow / revenue in every projected year.")
    fcf_margin_source: MarginSource = Field(description="Where the FCF margin comes from.")
    interest_added_back: bool = Field(description="Historical FCF margin includes after-tax interest.")
    tax_rate: float = Field(description="Tax rate of the after-tax interest add-back.")
    ebitda_margin: float | None = Field(description="EBITDA / revenue for the exit-multiple terminal value.")
    exit_multiple: float | None = Field(description="Exit EV/EBITDA multiple (None when unavailable).")
    exit_multiple_source: MultipleSource = Field(description="Where the exit multiple comes from.")
    wacc: float = Field(description="Discount rate.")
    projection_years: int = Field(ge=1, description="Years of explicit projection.")
    mid_year_convention: bool = Field(description="Discount yearly FCF from mid-year.")
    terminal_value_method: TerminalValueMethod = Field(description="Terminal value the DCF value uses.")
    total_debt: float = Field(description="Debt subtracted in the equity bridge, millions.")
    cash: float = Field(description="Cash added in the equity bridge, millions.")
    diluted_shares: float = Field(gt=0, description="Diluted shares, millions.")
    notes: list[str] = Field(default_factory=list, description="How each input was chosen, in words.")


class ProjectionYear(ResultModel):
    """One projected year."""

    year: int = Field(description="Projection year, 1..N.")
    fiscal_year: int = Field(description="Fiscal-year label (base year + year).")
    revenue_growth: float = Field(description="Revenue growth this year.")
    revenue: float = Field(description="Revenue, millions.")
    free_cash_flow: float = Field(description="Free cash flow, millions.")
    discount_factor: float = Field(description="1 / (1 + WACC) ** period.")
    present_value: float = Field(description="Discounted free cash flow, millions.")


class SensitivityTable(ResultModel):
    """DCF value per share for a grid of WACC (rows) and terminal growth (columns).

    A cell is ``None`` where WACC <= terminal growth (no finite Gordon value) or WACC <= 0."""

    wacc_values: list[float] = Field(description="Row WACCs, ascending.")
    terminal_growth_values: list[float] = Field(description="Column terminal growths, ascending.")
    values: list[list[float | None]] = Field(description="values[row][column] = value per share.")
    base_row: int = Field(description="Row of the base-case WACC.")
    base_column: int = Field(description="Column of the base-case terminal growth.")


class DCFResult(ResultModel):
    """A DCF valuation: projection, both terminal values, the bridge to equity and the value per share."""

    inputs: DCFInputs = Field(description="Inputs used.")
    projection: list[ProjectionYear] = Field(description="Projected years.")
    sum_pv_fcf: float = Field(description="Sum of discounted projected FCF, millions.")
    final_year_ebitda: float | None = Field(description="EBITDA of the last projected year, millions.")
    terminal_value_gordon: float = Field(description="Gordon-growth terminal value at the end of year N.")
    terminal_value_exit: float | None = Field(description="Exit-multiple terminal value at the end of year N.")
    implied_exit_multiple: float | None = Field(description="Gordon terminal value / final-year EBITDA.")
    implied_terminal_growth: float | None = Field(description="Perpetual growth implied by the exit value.")
    terminal_value_method: TerminalValueMethod = Field(description="Terminal value actually used.")
    terminal_value: float = Field(description="Terminal value used, at the end of year N, millions.")
    terminal_discount_factor: float = Field(description="1 / (1 + WACC) ** N.")
    pv_terminal_value: float = Field(description="Discounted terminal value, millions.")
    enterprise_value: float = Field(description="sum_pv_fcf + pv_terminal_value, millions.")
    terminal_value_share: float | None = Field(description="pv_terminal_value / enterprise_value (EV > 0).")
    total_debt: float = Field(description="Debt subtracted, millions.")
    cash: float = Field(description="Cash added, millions.")
    equity_value: float = Field(description="EV - debt + cash, millions (may be negative).")
    value_per_share: float = Field(description="Equity value / diluted shares (may be negative).")
    meaningful: bool = Field(description="False when enterprise or equity value is not positive.")
    issues: list[str] = Field(default_factory=list, description="Why the value may not be meaningful.")
    sensitivity: SensitivityTable | None = Field(default=None, description="WACC x terminal-growth table.")


# --------------------------------------------------------------------------------------------------- pieces


def growth_path(initial_growth: float, terminal_growth: float, years: int) -> list[float]:
    """Yearly revenue growth fading linearly from ``initial_growth`` in year 1 to ``terminal_growth`` in
    year ``years`` (a single year grows at ``initial_growth``)."""
    if years < 1:
        raise FinanceError(f"projection needs at least one year, got {years}")
    if years == 1:
        return [initial_growth]
    step = (terminal_growth - initial_growth) / (years - 1)
    return [initial_growth + step * t for t in range(years)]


def gordon_terminal_value(final_fcf: float, wacc: float, terminal_growth: float) -> float:
    """Gordon growth terminal value at the end of the last projected year:
    ``final_fcf * (1 + g) / (wacc - g)``. Raises ``FinanceError`` when ``wacc <= g`` (no finite value)."""
    if wacc <= terminal_growth:
        raise FinanceError(
            f"WACC {wacc:.2%} must exceed terminal growth {terminal_growth:.2%}: the Gordon growth value "
            "is not finite otherwise"
        )
    return final_fcf * (1.0 + terminal_growth) / (wacc - terminal_growth)


def exit_multiple_terminal_value(final_ebitda: float | None, multiple: float | None) -> float | None:
    """Exit-multiple terminal value ``final_ebitda * multiple``; ``None`` when the EBITDA is not positive or
    no multiple is available (a multiple of a loss is no value)."""
    if final_ebitda is None or multiple is None or final_ebitda <= 0 or multiple <= 0:
        return None
    return final_ebitda * multiple


def implied_perpetual_growth(terminal_value: float, final_fcf: float, wacc: float) -> float | None:
    """Perpetual growth g at which Gordon growth gives ``terminal_value``: solving
    ``TV = FCF * (1 + g) / (wacc - g)`` gives ``g = (TV * wacc - FCF) / (TV + FCF)``."""
    return safe_div(terminal_value * wacc - final_fcf, terminal_value + final_fcf)


def unlevered_free_cash_flow(year: FiscalYear, tax_rate: float, add_back_interest: bool = True) -> float | None:
    """Reported free cash flow (or operating cash flow - capex when FCF is missing) plus, when
    ``add_back_interest``, interest expense * (1 - ``tax_rate``); unreported interest adds nothing."""
    fcf = year.free_cash_flow
    if fcf is None and year.operating_cash_flow is not None and year.capex is not None:
        fcf = year.operating_cash_flow - year.capex
    if fcf is None:
        return None
    if add_back_interest and year.interest_expense is not None and year.interest_expense > 0:
        fcf += year.interest_expense * (1.0 - tax_rate)
    return fcf


def _ebitda(year: FiscalYear) -> float | None:
    if year.ebitda is not None:
        return year.ebitda
    if year.operating_income is not None and year.depreciation_amortization is not None:
        return year.operating_income + year.depreciation_amortization
    return None


def historical_margin(
    company: Company,
    years: int,
    metric: Literal["fcf", "ebitda"],
    tax_rate: float = 0.0,
    add_back_interest: bool = False,
) -> float | None:
    """Average of the yearly margins (unlevered free cash flow, see :func:`unlevered_free_cash_flow`, or
    EBITDA over revenue) of the ``years`` newest fiscal years that report the figures with positive revenue;
    ``None`` when there are none."""
    margins: list[float] = []
    for fy in company.financials[:years]:
        value = unlevered_free_cash_flow(fy, tax_rate, add_back_interest) if metric == "fcf" else _ebitda(fy)
        margin = positive_div(value, fy.revenue)
        if margin is not None:
            margins.append(margin)
    return sum(margins) / len(margins) if margins else None


# --------------------------------------------------------------------------------------------------- inputs


def dcf_inputs(
    company: Company,
    wacc: float,
    assumptions: ValuationAssumptions | None = None,
    peer_ev_ebitda: float | None = None,
    tax_rate: float | None = None,
) -> DCFInputs:
    """Resolve the DCF inputs of ``company``: base revenue, year-1 growth, FCF and EBITDA margins, exit
    multiple (override, else ``peer_ev_ebitda``, the peers' median), bridge items and shares, each with
    where it came from. ``tax_rate`` (default: resolved as for the WACC) taxes the interest add-back.
    Raises ``FinanceError`` when revenue is not positive or no FCF can be found."""
    a = assumptions or ValuationAssumptions()
    fy = latest_year(company)
    tax = tax_rate if tax_rate is not None else resolve_tax_rate(fy, a)[0]
    add_back = company.sector != "Financials"
    market = market_data(company)
    notes: list[str] = []
    if fy.revenue is None or fy.revenue <= 0:
        raise FinanceError(f"{company.ticker}: DCF needs positive revenue in FY{fy.fiscal_year}")

    growth_source: GrowthSource
    if a.initial_revenue_growth is not None:
        initial, growth_source = a.initial_revenue_growth, "override"
        notes.append(f"year-1 revenue growth {initial:.1%} set in the assumptions")
    elif (history := revenue_cagr(company, a.growth_history_years)) is not None:
        rate, span = history
        initial = clamp(rate, a.min_initial_growth, a.max_initial_growth)
        growth_source = "historical_cagr" if initial == rate else "historical_cagr_limited"
        limited = "" if initial == rate else f", limited to [{a.min_initial_growth:.1%}, {a.max_initial_growth:.1%}]"
        notes.append(f"year-1 revenue growth {initial:.1%}: {span}-year revenue CAGR {rate:.1%}{limited}")
    else:
        initial, growth_source = a.terminal_growth, "terminal_growth"
        notes.append(f"one year of revenue history: growth held at terminal growth {initial:.1%}")

    margin_source: MarginSource
    if a.fcf_margin is not None:
        margin, margin_source = a.fcf_margin, "override"
        notes.append(f"FCF margin {margin:.1%} set in the assumptions")
    else:
        raw = historical_margin(company, a.fcf_margin_history_years, "fcf", tax, add_back)
        if raw is None:
            raise FinanceError(f"{company.ticker}: DCF needs free cash flow (or operating cash flow and capex)")
        margin = clamp(raw, a.min_fcf_margin, a.max_fcf_margin)
        margin_source = "historical" if margin == raw else "historical_limited"
        limited = "" if margin == raw else f", limited to [{a.min_fcf_margin:.1%}, {a.max_fcf_margin:.1%}]"
        kind = "unlevered FCF margin (after-tax interest added back)" if add_back else "FCF margin"
        notes.append(f"{kind} {margin:.1%}: average of up to {a.fcf_margin_history_years} years{limited}")

    ebitda_margin = historical_margin(company, a.fcf_margin_history_years, "ebitda")
    multiple_source: MultipleSource
    if a.exit_multiple is not None:
        multiple, multiple_source = a.exit_multiple, "override"
    elif peer_ev_ebitda is not None and peer_ev_ebitda > 0:
        multiple, multiple_source = peer_ev_ebitda, "peer_median"
    else:
        multiple, multiple_source = None, "none"
        notes.append("no exit multiple: not set and no peer EV/EBITDA median")

    debt, cash = fy.total_debt, fy.cash
    if debt is None:
        notes.append("total debt not reported; bridge uses 0")
    if cash is None:
        notes.append("cash not reported; bridge uses 0")
    return DCFInputs(
        ticker=company.ticker,
        base_fiscal_year=fy.fiscal_year,
        base_revenue=fy.revenue,
        initial_growth=initial,
        initial_growth_source=growth_source,
        terminal_growth=a.terminal_growth,
        fcf_margin=margin,
        fcf_margin_source=margin_source,
        interest_added_back=add_back and margin_source != "override",
        tax_rate=tax,
        ebitda_margin=ebitda_margin,
        exit_multiple=multiple,
        exit_multiple_source=multiple_source,
        wacc=wacc,
        projection_years=a.projection_years,
        mid_year_convention=a.mid_year_convention,
        terminal_value_method=a.terminal_value_method,
        total_debt=debt if debt is not None else 0.0,
        cash=cash if cash is not None else 0.0,
        diluted_shares=market.diluted_shares,
        notes=notes,
    )


# --------------------------------------------------------------------------------------------------- run


def run_dcf(inputs: DCFInputs, wacc: float | None = None, terminal_growth: float | None = None) -> DCFResult:
    """Run the DCF on ``inputs`` (``wacc`` / ``terminal_growth`` replace the inputs' values when given, as
    the sensitivity table does). Raises ``FinanceError`` when WACC <= 0 or WACC <= terminal growth, or when
    the figures overflow; a negative enterprise or equity value comes back with ``meaningful=False``."""
    w = inputs.wacc if wacc is None else wacc
    g = inputs.terminal_growth if terminal_growth is None else terminal_growth
    if w <= 0:
        raise FinanceError(f"WACC {w:.2%} must be positive")
    n = inputs.projection_years

    projection: list[ProjectionYear] = []
    revenue = inputs.base_revenue
    for t, rate in enumerate(growth_path(inputs.initial_growth, g, n), start=1):
        revenue *= 1.0 + rate
        fcf = revenue * inputs.fcf_margin
        period = t - 0.5 if inputs.mid_year_convention else float(t)
        factor = (1.0 + w) ** -period
        projection.append(
            ProjectionYear(
                year=t,
                fiscal_year=inputs.base_fiscal_year + t,
                revenue_growth=rate,
                revenue=revenue,
                free_cash_flow=fcf,
                discount_factor=factor,
                present_value=fcf * factor,
            )
        )
    final = projection[-1]
    sum_pv = sum(p.present_value for p in projection)
    final_ebitda = final.revenue * inputs.ebitda_margin if inputs.ebitda_margin is not None else None

    issues: list[str] = []
    gordon = gordon_terminal_value(final.free_cash_flow, w, g)
    exit_value = exit_multiple_terminal_value(final_ebitda, inputs.exit_multiple)
    method: TerminalValueMethod = inputs.terminal_value_method
    if method != "gordon" and exit_value is None:
        issues.append(f"exit-multiple terminal value unavailable; '{method}' fell back to Gordon growth")
        method = "gordon"
    if method == "gordon":
        terminal = gordon
    elif method == "exit_multiple" and exit_value is not None:
        terminal = exit_value
    else:
        terminal = (gordon + (exit_value or 0.0)) / 2.0
    terminal_factor = (1.0 + w) ** -n
    pv_terminal = terminal * terminal_factor
    enterprise = sum_pv + pv_terminal
    equity = enterprise - inputs.total_debt + inputs.cash
    per_share = equity / inputs.diluted_shares
    if not all(is_finite(x) for x in (gordon, enterprise, equity, per_share)):
        raise FinanceError(f"{inputs.ticker}: DCF figures overflow; check the inputs' units")

    if inputs.fcf_margin <= 0:
        issues.append(f"FCF margin {inputs.fcf_margin:.1%} is not positive: projected cash flows destroy value")
    if enterprise <= 0:
        issues.append(f"enterprise value {enterprise:,.0f} is not positive")
    if equity <= 0:
        issues.append(f"equity value {equity:,.0f} is not positive (debt exceeds enterprise value plus cash)")
    return DCFResult(
        inputs=inputs,
        projection=projection,
        sum_pv_fcf=sum_pv,
        final_year_ebitda=final_ebitda,
        terminal_value_gordon=gordon,
        terminal_value_exit=exit_value,
        implied_exit_multiple=positive_div(gordon, final_ebitda),
        implied_terminal_growth=(
            implied_perpetual_growth(exit_value, final.free_cash_flow, w) if exit_value is not None else None
        ),
        terminal_value_method=method,
        terminal_value=terminal,
        terminal_discount_factor=terminal_factor,
        pv_terminal_value=pv_terminal,
        enterprise_value=enterprise,
        terminal_value_share=positive_div(pv_terminal, enterprise),
        total_debt=inputs.total_debt,
        cash=inputs.cash,
        equity_value=equity,
        value_per_share=per_share,
        meaningful=enterprise > 0 and equity > 0,
        issues=issues,
    )


def sensitivity_table(inputs: DCFInputs, wacc_step: float, growth_step: float, steps: int) -> SensitivityTable:
    """Value per share for WACC ``inputs.wacc + k * wacc_step`` (rows) by terminal growth
    ``inputs.terminal_growth + k * growth_step`` (columns), k = -steps..steps. Cells where WACC <= growth
    or WACC <= 0 are ``None`` (the DCF has no finite value there)."""
    offsets = range(-steps, steps + 1)
    waccs = [inputs.wacc + k * wacc_step for k in offsets]
    growths = [inputs.terminal_growth + k * growth_step for k in offsets]
    values: list[list[float | None]] = []
    for w in waccs:
        row: list[float | None] = []
        for g in growths:
            if w <= 0 or w <= g:
                row.append(None)
                continue
            try:
                row.append(finite_or_none(run_dcf(inputs, wacc=w, terminal_growth=g).value_per_share))
            except FinanceError:
                row.append(None)
        values.append(row)
    return SensitivityTable(
        wacc_values=waccs, terminal_growth_values=growths, values=values, base_row=steps, base_column=steps
    )


def discounted_cash_flow(
    company: Company,
    wacc: float,
    assumptions: ValuationAssumptions | None = None,
    peer_ev_ebitda: float | None = None,
) -> DCFResult:
    """The company's DCF at ``wacc`` with its WACC x terminal-growth sensitivity table (steps from the
    assumptions). ``peer_ev_ebitda`` (the peers' median) is the exit multiple unless the assumptions set one.
    Raises ``FinanceError`` when WACC <= terminal growth or the record lacks revenue or cash flow."""
    a = assumptions or ValuationAssumptions()
    inputs = dcf_inputs(company, wacc, a, peer_ev_ebitda)
    result = run_dcf(inputs)
    table = sensitivity_table(inputs, a.sensitivity_wacc_step, a.sensitivity_growth_step, a.sensitivity_steps)
    return result.model_copy(update={"sensitivity": table})
