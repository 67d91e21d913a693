"""Discounted cash flow: project revenue and free cash flow, add a terminal value, discount, bridge to equity.

Two models, chosen by ``valuation.dcf_model``:

**fundamental** (Damodaran, *Investment Valuation*, 3rd ed., ch. 12-13 and his "fcffsimpleginzu"
spreadsheet): an explicit period of N = ``explicit_years`` (10) years in which growth comes from the business
and is paid for:

* year-1 revenue growth g0 = reinvestment rate x return on invested capital (the growth a company's own
  reinvestment funds), limited to the range between its historical revenue CAGR and the terminal growth
  (so it is never higher than the company has grown nor lower than both), and to
  ``[min_initial_growth, max_initial_growth]``; reinvestment rate = (NOPAT - unlevered FCF) / NOPAT over the
  history, ROIC = NOPAT / (equity + debt - cash) of the latest year, NOPAT = operating income x (1 - tax);
* growth holds at g0 for ``high_growth_years`` (5), then fades linearly to the terminal growth g in year N;
* the operating margin moves linearly from the latest year's to the long-run margin in year N
  (``target_operating_margin``, or the company's historical average operating margin);
* ``NOPAT_t = revenue_t x margin_t x (1 - tax)``; reinvestment ``(revenue_t - revenue_t-1) / sales_to_capital``
  with sales-to-capital = revenue / invested capital of the latest year (the peers' median when the company's
  invested capital is not positive), so growth is never free; ``FCF_t = NOPAT_t - reinvestment_t``;
* terminal value (value-driver formula, Koller, Goedhart and Wessels, *Valuation*, 7th ed., ch. 10):
  ``NOPAT_N+1 x (1 - g / RONIC) / (WACC - g)`` with RONIC, the return on new invested capital after year N,
  equal to the WACC by default (``terminal_roic``): new investment then earns its cost of capital, and the
  terminal value does not depend on g.

**five_year** (the default today; the fundamental model is measured against it in
``benchmarks/valuation_calibration.py``): for projection years t = 1..N (N = ``projection_years``, 5):

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

Both models: WACC <= g (or WACC <= 0) raises ``FinanceError``: the Gordon formula has no finite value there.
A negative enterprise or equity value is reported with ``meaningful=False`` and the reason in ``issues``; the
price target and every text leave such a value out and say why.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from equitune.errors import FinanceError
from equitune.finance.assumptions import DCFModel, TerminalValueMethod, ValuationAssumptions
from equitune.finance.base import ResultModel, clamp, finite_or_none, is_finite, positive_div, safe_div
from equitune.finance.inputs import latest_year, market_data
from equitune.finance.ratios import revenue_cagr
from equitune.finance.wacc import resolve_tax_rate
from equitune.market.models import Company, FiscalYear

GrowthSource = Literal[
    "override",
    "historical_cagr",
    "historical_cagr_limited",
    "terminal_growth",
    "fundamental",
    "fundamental_limited",
]
CapitalSource = Literal["book", "peer_median", "override"]
TargetMarginSource = Literal["override", "latest", "history"]
MarginSource = Literal["override", "historical", "historical_limited"]
MultipleSource = Literal["override", "peer_median", "none"]


class DCFInputs(ResultModel):
    """Everything a DCF run needs, resolved from the company record and the assumptions."""

    ticker: str = Field(description="Company the inputs describe.")
    model: DCFModel = Field(default="five_year", description="'fundamental' or 'five_year' (see the module).")
    base_fiscal_year: int = Field(description="Fiscal year the projection starts from (year 0).")
    base_revenue: float = Field(gt=0, description="Revenue of the base year, millions.")
    initial_growth: float = Field(description="Revenue growth in projection year 1.")
    initial_growth_source: GrowthSource = Field(description="Where year-1 growth comes from.")
    terminal_growth: float = Field(description="Growth in the last projected year and in perpetuity.")
    fcf_margin: float = Field(
        description="five_year: free cash flow / revenue in every projected year; fundamental: the historical "
        "unlevered FCF margin, for reference (FCF is NOPAT less reinvestment there)."
    )
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
    # ---- the fundamental model's inputs (None in the five-year model)
    operating_margin: float | None = Field(default=None, description="Latest year's operating income / revenue.")
    target_operating_margin: float | None = Field(default=None, description="Operating margin reached in year N.")
    target_margin_source: TargetMarginSource | None = Field(
        default=None, description="Where the long-run margin comes from."
    )
    invested_capital: float | None = Field(default=None, description="Equity + debt - cash, latest year, millions.")
    sales_to_capital: float | None = Field(default=None, description="Revenue per unit of invested capital.")
    sales_to_capital_source: CapitalSource | None = Field(
        default=None, description="Where sales-to-capital comes from."
    )
    base_roic: float | None = Field(default=None, description="NOPAT / invested capital, latest year.")
    reinvestment_rate: float | None = Field(default=None, description="(NOPAT - unlevered FCF) / NOPAT, history.")
    fundamental_growth: float | None = Field(default=None, description="reinvestment_rate x base_roic.")
    historical_growth: float | None = Field(default=None, description="Historical revenue CAGR.")
    high_growth_years: int | None = Field(default=None, description="Years at g0 before the fade.")
    terminal_roic: float | None = Field(
        default=None, description="Return on new capital after year N (None = the WACC of the run)."
    )
    notes: list[str] = Field(default_factory=list, description="How each input was chosen, in words.")


class ProjectionYear(ResultModel):
    """One projected year."""

    year: int = Field(description="Projection year, 1..N.")
    fiscal_year: int = Field(description="Fiscal-year label (base year + year).")
    revenue_growth: float = Field(description="Revenue growth this year.")
    revenue: float = Field(description="Revenue, millions.")
    operating_margin: float | None = Field(default=None, description="Operating margin (fundamental model).")
    nopat: float | None = Field(default=None, description="Operating income after tax, millions (fundamental).")
    reinvestment: float | None = Field(default=None, description="Capital invested for growth, millions (fundamental).")
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
    model: DCFModel = Field(default="five_year", description="'fundamental' or 'five_year'.")
    terminal_roic: float | None = Field(default=None, description="Return on new capital after year N (fundamental).")
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
    peer_sales_to_capital: float | None = None,
) -> DCFInputs:
    """Resolve the DCF inputs of ``company`` for the model ``assumptions.dcf_model`` names: base revenue,
    year-1 growth, margins, exit multiple (override, else ``peer_ev_ebitda``, the peers' median), bridge items
    and shares, and for the fundamental model the return on capital, reinvestment rate, sales-to-capital
    (``peer_sales_to_capital`` when the company's invested capital is not positive) and long-run margin, each
    with where it came from. ``tax_rate`` (default: resolved as for the WACC) taxes NOPAT and the interest
    add-back. Raises ``FinanceError`` when revenue is not positive or no FCF can be found."""
    a = assumptions or ValuationAssumptions()
    tax = tax_rate if tax_rate is not None else resolve_tax_rate(latest_year(company), a)[0]
    five = _five_year_inputs(company, wacc, a, peer_ev_ebitda, tax)
    if a.dcf_model == "five_year":
        return five
    return _fundamental_inputs(company, five, a, peer_sales_to_capital)


def _five_year_inputs(
    company: Company, wacc: float, a: ValuationAssumptions, peer_ev_ebitda: float | None, tax: float
) -> DCFInputs:
    fy = latest_year(company)
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


def invested_capital(year: FiscalYear) -> float | None:
    """Book invested capital ``total_equity + total_debt - cash`` (None when equity is not reported)."""
    if year.total_equity is None:
        return None
    return year.total_equity + (year.total_debt or 0.0) - (year.cash or 0.0)


def sales_to_capital(company: Company) -> float | None:
    """Revenue / book invested capital of the latest year; None when either is not positive."""
    fy = latest_year(company)
    return positive_div(fy.revenue, invested_capital(fy)) if (invested_capital(fy) or 0) > 0 else None


def _operating_margin(year: FiscalYear) -> float | None:
    return positive_div(year.operating_income, year.revenue) if year.operating_income is not None else None


def _fundamental_inputs(
    company: Company, five: DCFInputs, a: ValuationAssumptions, peer_sales_to_capital: float | None
) -> DCFInputs:
    fy = latest_year(company)
    tax = five.tax_rate
    notes = [n for n in five.notes if not n.startswith(("year-1 revenue growth", "one year of revenue history"))]
    margin = _operating_margin(fy)
    if margin is None or fy.operating_income is None:
        raise FinanceError(f"{company.ticker}: the fundamental DCF needs operating income in FY{fy.fiscal_year}")
    history_margins = [
        m for y in company.financials[: a.fcf_margin_history_years] if (m := _operating_margin(y)) is not None
    ]
    target_source: TargetMarginSource
    if a.target_operating_margin is not None:
        target, target_source = a.target_operating_margin, "override"
        notes.append(f"operating margin moves from {margin:.1%} to {target:.1%} (set in the assumptions) by year N")
    elif a.long_run_margin == "history":
        target, target_source = sum(history_margins) / len(history_margins), "history"
        notes.append(
            f"operating margin moves from {margin:.1%} to {target:.1%}, the average of the last "
            f"{len(history_margins)} years, by year N"
        )
    else:
        target, target_source = margin, "latest"
        notes.append(f"operating margin held at the latest year's {margin:.1%} (long-run margin: latest)")

    capital = invested_capital(fy)
    source: CapitalSource
    if a.sales_to_capital is not None:
        ratio, source = a.sales_to_capital, "override"
    elif capital is not None and capital > 0:
        ratio, source = fy.revenue / capital, "book"  # type: ignore[operator]
    elif peer_sales_to_capital is not None and peer_sales_to_capital > 0:
        ratio, source = peer_sales_to_capital, "peer_median"
        notes.append(f"invested capital {capital or 0:,.0f} is not positive: sales-to-capital is the peers' median")
    else:
        raise FinanceError(
            f"{company.ticker}: invested capital (equity + debt - cash) is not positive and no peer sales-to-capital "
            "is available, so the cost of growth cannot be measured"
        )
    notes.append(
        f"sales-to-capital {ratio:.2f} ({source}): each extra dollar of revenue needs {1 / ratio:.2f} of capital"
    )

    nopat0 = fy.operating_income * (1.0 - tax)
    roic = positive_div(nopat0, capital) if capital is not None and capital > 0 else None
    nopat_sum = reinvest_sum = 0.0
    for y in company.financials[: a.fcf_margin_history_years]:
        fcff = unlevered_free_cash_flow(y, tax, company.sector != "Financials")
        if y.operating_income is None or fcff is None:
            continue
        nopat = y.operating_income * (1.0 - tax)
        nopat_sum += nopat
        reinvest_sum += nopat - fcff
    rate = reinvest_sum / nopat_sum if nopat_sum > 0 else None
    fundamental = rate * roic if rate is not None and roic is not None else None

    history = revenue_cagr(company, a.growth_history_years)
    hist = history[0] if history is not None else None
    growth_source: GrowthSource
    if a.initial_revenue_growth is not None:
        initial, growth_source = a.initial_revenue_growth, "override"
        notes.append(f"year-1 revenue growth {initial:.1%} set in the assumptions")
    elif fundamental is not None:
        low, high = a.min_initial_growth, a.max_initial_growth
        if hist is not None:
            low = max(low, min(hist, a.terminal_growth))
            high = min(high, max(hist, a.terminal_growth))
        initial = clamp(fundamental, low, max(low, high))
        growth_source = "fundamental" if initial == fundamental else "fundamental_limited"
        bound = "" if initial == fundamental else f", limited to [{low:.1%}, {max(low, high):.1%}]"
        hist_text = f" (historical revenue CAGR {hist:.1%})" if hist is not None else ""
        notes.append(
            f"year-1 revenue growth {initial:.1%}: reinvestment rate {rate:.1%} x ROIC {roic:.1%} = "
            f"{fundamental:.1%}{bound}{hist_text}"
        )
    elif hist is not None:
        initial = clamp(hist, a.min_initial_growth, a.max_initial_growth)
        growth_source = "historical_cagr" if initial == hist else "historical_cagr_limited"
        why = "NOPAT is not positive" if nopat_sum <= 0 else "invested capital is not positive"
        notes.append(f"year-1 revenue growth {initial:.1%}: historical revenue CAGR {hist:.1%} ({why}, so no ROIC)")
    else:
        initial, growth_source = a.terminal_growth, "terminal_growth"
        notes.append(f"one year of revenue history and no ROIC: growth held at terminal growth {initial:.1%}")
    notes.append(
        f"growth holds for {a.high_growth_years} years, then fades to {a.terminal_growth:.1%} by year "
        f"{a.explicit_years}; new capital after year {a.explicit_years} earns "
        + (f"{a.terminal_roic:.1%}" if a.terminal_roic is not None else "the WACC")
    )
    return five.model_copy(
        update={
            "model": "fundamental",
            "initial_growth": initial,
            "initial_growth_source": growth_source,
            "projection_years": a.explicit_years,
            "operating_margin": margin,
            "target_operating_margin": target,
            "target_margin_source": target_source,
            "invested_capital": capital,
            "sales_to_capital": ratio,
            "sales_to_capital_source": source,
            "base_roic": roic,
            "reinvestment_rate": rate,
            "fundamental_growth": fundamental,
            "historical_growth": hist,
            "high_growth_years": a.high_growth_years,
            "terminal_roic": a.terminal_roic,
            "notes": notes,
        }
    )


def staged_growth_path(initial_growth: float, terminal_growth: float, years: int, high_years: int) -> list[float]:
    """``initial_growth`` for the first ``high_years`` years, then a linear fade reaching ``terminal_growth``
    in year ``years`` (with ``high_years >= years``, growth holds throughout)."""
    if years < 1:
        raise FinanceError(f"projection needs at least one year, got {years}")
    fade = years - high_years
    if fade <= 0:
        return [initial_growth] * years
    return [initial_growth] * high_years + [
        initial_growth + (terminal_growth - initial_growth) * k / fade for k in range(1, fade + 1)
    ]


def margin_path(start: float, target: float, years: int) -> list[float]:
    """Operating margin of years 1..N moving linearly from ``start`` (year 0) to ``target`` (year N)."""
    return [start + (target - start) * t / years for t in range(1, years + 1)]


def value_driver_terminal_value(nopat_next: float, wacc: float, growth: float, roic: float) -> float:
    """``NOPAT_N+1 x (1 - g / RONIC) / (WACC - g)``: the perpetuity of FCF when growth g needs reinvestment
    g / RONIC of NOPAT. Raises ``FinanceError`` when WACC <= g or RONIC <= 0."""
    if wacc <= growth:
        raise FinanceError(
            f"WACC {wacc:.2%} must exceed terminal growth {growth:.2%}: the Gordon growth value is not finite otherwise"
        )
    if roic <= 0:
        raise FinanceError(f"terminal return on capital {roic:.2%} must be positive")
    return nopat_next * (1.0 - growth / roic) / (wacc - growth)


def fundamental_value_per_share(
    inputs: DCFInputs, initial_growth: float, target_margin: float, wacc: float | None = None
) -> float:
    """The fundamental model's value per share with year-1 growth and long-run margin replaced: the arithmetic of
    ``run_dcf`` without its result models (the reverse DCF solves on it)."""
    w = inputs.wacc if wacc is None else wacc
    g, n = inputs.terminal_growth, inputs.projection_years
    tax, ratio = inputs.tax_rate, inputs.sales_to_capital or 1.0
    revenue, pv_sum, margin = inputs.base_revenue, 0.0, inputs.operating_margin or 0.0
    rates = staged_growth_path(initial_growth, g, n, inputs.high_growth_years or n)
    margins = margin_path(inputs.operating_margin or 0.0, target_margin, n)
    for t, (rate, margin) in enumerate(zip(rates, margins, strict=True), start=1):
        previous, revenue = revenue, revenue * (1.0 + rate)
        fcf = revenue * margin * (1.0 - tax) - (revenue - previous) / ratio
        period = t - 0.5 if inputs.mid_year_convention else float(t)
        pv_sum += fcf * (1.0 + w) ** -period
    roic = inputs.terminal_roic if inputs.terminal_roic is not None else w
    terminal = value_driver_terminal_value(revenue * (1.0 + g) * margin * (1.0 - tax), w, g, roic)
    equity = pv_sum + terminal * (1.0 + w) ** -n - inputs.total_debt + inputs.cash
    return equity / inputs.diluted_shares


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
    fundamental = inputs.model == "fundamental"

    projection: list[ProjectionYear] = []
    revenue = inputs.base_revenue
    if fundamental:
        rates = staged_growth_path(inputs.initial_growth, g, n, inputs.high_growth_years or n)
        margins: list[float | None] = list(
            margin_path(inputs.operating_margin or 0.0, inputs.target_operating_margin or 0.0, n)
        )
    else:
        rates, margins = growth_path(inputs.initial_growth, g, n), [None] * n
    for t, (rate, margin) in enumerate(zip(rates, margins, strict=True), start=1):
        previous, revenue = revenue, revenue * (1.0 + rate)
        nopat = reinvestment = None
        if margin is not None:
            nopat = revenue * margin * (1.0 - inputs.tax_rate)
            reinvestment = (revenue - previous) / (inputs.sales_to_capital or 1.0)
            fcf = nopat - reinvestment
        else:
            fcf = revenue * inputs.fcf_margin
        period = t - 0.5 if inputs.mid_year_convention else float(t)
        factor = (1.0 + w) ** -period
        projection.append(
            ProjectionYear(
                year=t,
                fiscal_year=inputs.base_fiscal_year + t,
                revenue_growth=rate,
                revenue=revenue,
                operating_margin=margin,
                nopat=nopat,
                reinvestment=reinvestment,
                free_cash_flow=fcf,
                discount_factor=factor,
                present_value=fcf * factor,
            )
        )
    final = projection[-1]
    sum_pv = sum(p.present_value for p in projection)
    final_ebitda = final.revenue * inputs.ebitda_margin if inputs.ebitda_margin is not None else None

    issues: list[str] = []
    terminal_roic: float | None = None
    if fundamental:
        terminal_roic = inputs.terminal_roic if inputs.terminal_roic is not None else w
        last_margin = final.operating_margin or 0.0
        gordon = value_driver_terminal_value(
            final.revenue * (1.0 + g) * last_margin * (1.0 - inputs.tax_rate), w, g, terminal_roic
        )
    else:
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

    if not fundamental and inputs.fcf_margin <= 0:
        issues.append(f"FCF margin {inputs.fcf_margin:.1%} is not positive: projected cash flows destroy value")
    if fundamental and (final.operating_margin or 0.0) <= 0:
        issues.append(f"operating margin {final.operating_margin or 0.0:.1%} in year {n} is not positive")
    if enterprise <= 0:
        issues.append(f"enterprise value {enterprise:,.0f} is not positive")
    if equity <= 0:
        issues.append(f"equity value {equity:,.0f} is not positive (debt exceeds enterprise value plus cash)")
    return DCFResult(
        inputs=inputs,
        model=inputs.model,
        terminal_roic=terminal_roic,
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
    peer_sales_to_capital: float | None = None,
) -> DCFResult:
    """The company's DCF at ``wacc`` with its WACC x terminal-growth sensitivity table (steps from the
    assumptions). ``peer_ev_ebitda`` (the peers' median) is the exit multiple unless the assumptions set one.
    Raises ``FinanceError`` when WACC <= terminal growth or the record lacks revenue or cash flow."""
    a = assumptions or ValuationAssumptions()
    inputs = dcf_inputs(company, wacc, a, peer_ev_ebitda, peer_sales_to_capital=peer_sales_to_capital)
    result = run_dcf(inputs)
    table = sensitivity_table(inputs, a.sensitivity_wacc_step, a.sensitivity_growth_step, a.sensitivity_steps)
    return result.model_copy(update={"sensitivity": table})
