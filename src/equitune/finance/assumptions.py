"""Valuation assumptions: the ``valuation`` section of the project configuration.

Every number the finance engine does not read from a company's filings is a field here, with a default, a
range and a description, so a report can show every assumption behind a price target and a user can change
any of them (``--set valuation.terminal_growth=0.02``).

How the assumptions are used, in one place:

* **Cost of equity** (CAPM): ``risk_free_rate + beta * equity_risk_premium``. The beta is the record's raw
  (regression) beta adjusted toward the market's 1.0 by ``beta_adjustment`` (default ``blume``:
  ``2/3 * raw + 1/3``, Blume 1971, as Bloomberg reports it); ``default_beta`` when the company reports none. The
  default equity risk premium is Damodaran's implied ERP for the S&P 500 on 2025-01-01, 4.33% (trailing
  12-month cash yield; the snapshot's prices are the 2024-12-31 closes).
* **Cost of debt** (pre-tax): ``cost_of_debt`` when set; otherwise the latest year's interest expense / total
  debt, limited to ``[min_cost_of_debt, max_cost_of_debt]``; when interest or debt is not reported,
  ``risk_free_rate + credit_spread``.
* **Tax rate**: ``tax_rate`` when set; otherwise the effective rate income tax / pretax income of the latest
  year, limited to ``[min_tax_rate, max_tax_rate]``; ``fallback_tax_rate`` when pretax income is not positive
  or not reported.
* **Revenue growth**: year 1 grows at ``initial_revenue_growth`` when set, otherwise at the historical revenue
  CAGR over up to ``growth_history_years`` years limited to ``[min_initial_growth, max_initial_growth]``
  (``terminal_growth`` when the record has a single year). Growth then fades linearly so that the last
  projected year grows at ``terminal_growth``.
* **FCF margin**: ``fcf_margin`` when set, otherwise the average unlevered free-cash-flow margin (reported
  FCF + interest expense * (1 - tax rate); Financials: reported FCF) of up to ``fcf_margin_history_years``
  recent years, limited to ``[min_fcf_margin, max_fcf_margin]``; held constant over the projection.
* **Terminal value**: Gordon growth and exit multiple are both computed and reported; the DCF value uses
  ``terminal_value_method`` (default ``gordon``, so the DCF stays independent of market multiples, which the
  comparables half of the price target already brings in). The exit multiple is ``exit_multiple`` when set,
  otherwise the peers' median EV/EBITDA.
* **Comparables value**: weighted average of the per-share values implied by the peers' median EV/EBITDA,
  P/E and EV/Sales (``comps_weight_*``), re-normalised over the multiples that give a positive value.
* **Price target**: ``dcf_weight * DCF value + (1 - dcf_weight) * comparables value``; when one of the two is
  not meaningful (missing or not positive) the other is used alone and the target says so.
* **Rating**: Buy when upside >= ``buy_threshold``, Sell when upside < ``sell_threshold``, Hold in between.
* **Scenarios**: bull and bear re-run the DCF with ``bull`` / ``bear`` shifts added to the base assumptions
  (first-year revenue growth, FCF margin, WACC, exit multiple; the exit-multiple shift also moves the peers'
  EV/EBITDA used by the comparables value) and blend as the price target does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TerminalValueMethod = Literal["gordon", "exit_multiple", "average"]
DCFModel = Literal["fundamental", "five_year"]
BetaAdjustment = Literal["blume", "none"]

IMPLIED_ERP_2025 = 0.0433
"""Damodaran's implied equity risk premium of the S&P 500 on 2025-01-01 (trailing 12-month cash yield), from his
January 2025 data update (pages.stern.nyu.edu/~adamodar, "Implied ERP")."""


class ScenarioShift(BaseModel):
    """Changes to the base-case assumptions defining a bull or bear scenario (each added to the base)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    revenue_growth: float = Field(
        default=0.0,
        ge=-0.2,
        le=0.2,
        description="Added to year-1 revenue growth (the fade to terminal growth is kept), e.g. 0.02.",
    )
    fcf_margin: float = Field(
        default=0.0,
        ge=-0.2,
        le=0.2,
        description="Added to the margin lever: the FCF margin (five_year model) or the long-run operating margin "
        "(fundamental model), e.g. 0.02.",
    )
    wacc: float = Field(
        default=0.0,
        ge=-0.05,
        le=0.05,
        description="Added to the discount rate (the WACC; the cost of equity for the excess-return and "
        "dividend-discount models), e.g. -0.005 for a bull case.",
    )
    exit_multiple: float = Field(
        default=0.0,
        ge=-10.0,
        le=10.0,
        description="Turns of EV/EBITDA added to the exit multiple and to the peers' median EV/EBITDA.",
    )


def _bull() -> ScenarioShift:
    return ScenarioShift(revenue_growth=0.02, fcf_margin=0.02, wacc=-0.005, exit_multiple=1.0)


def _bear() -> ScenarioShift:
    return ScenarioShift(revenue_growth=-0.02, fcf_margin=-0.02, wacc=0.005, exit_multiple=-1.0)


class ValuationAssumptions(BaseModel):
    """Every assumption of the finance engine (rates and ratios as fractions: 0.045 = 4.5%)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # ---- cost of capital
    risk_free_rate: float = Field(
        default=0.045,
        ge=0.0,
        le=0.2,
        description="Risk-free rate: 10-year US Treasury yield, about 4.5% at end-2024.",
    )
    equity_risk_premium: float = Field(
        default=IMPLIED_ERP_2025,
        ge=0.0,
        le=0.2,
        description="Equity risk premium over the risk-free rate used in CAPM; default: Damodaran's implied ERP "
        "of the S&P 500 on 2025-01-01 (4.33%, trailing 12-month cash yield).",
    )
    beta_adjustment: BetaAdjustment = Field(
        default="blume",
        description="How the record's raw beta is adjusted: 'blume' = 2/3 * raw + 1/3 (Blume 1971), 'none' = raw.",
    )
    default_beta: float = Field(
        default=1.0,
        ge=0.0,
        le=5.0,
        description="Equity beta used when the company record has none (the market's).",
    )
    cost_of_debt: float | None = Field(
        default=None,
        ge=0.0,
        le=0.3,
        description="Pre-tax cost of debt for every company; null = interest expense / total debt.",
    )
    min_cost_of_debt: float = Field(
        default=0.02, ge=0.0, le=0.3, description="Lower limit on the implied cost of debt (interest / debt)."
    )
    max_cost_of_debt: float = Field(
        default=0.15, ge=0.0, le=0.3, description="Upper limit on the implied cost of debt (interest / debt)."
    )
    credit_spread: float = Field(
        default=0.015,
        ge=0.0,
        le=0.2,
        description="Spread over the risk-free rate: the cost of debt when interest or debt is not reported.",
    )
    tax_rate: float | None = Field(
        default=None,
        ge=0.0,
        le=0.6,
        description="Tax rate for every company; null = effective rate (tax / pretax income).",
    )
    min_tax_rate: float = Field(default=0.0, ge=0.0, le=0.6, description="Lower limit on the effective tax rate.")
    max_tax_rate: float = Field(default=0.35, ge=0.0, le=0.6, description="Upper limit on the effective tax rate.")
    fallback_tax_rate: float = Field(
        default=0.21,
        ge=0.0,
        le=0.6,
        description="Tax rate when pretax income is not positive or not reported (US federal rate).",
    )

    # ---- DCF projection
    dcf_model: DCFModel = Field(
        default="five_year",
        description="'fundamental': growth from reinvestment x ROIC, paid for through sales-to-capital, margins "
        "toward a long-run level, returns on new capital converging to the WACC after year N; 'five_year': the "
        "earlier model (historical CAGR fading over 5 years, FCF margin held flat).",
    )
    projection_years: int = Field(
        default=5, ge=1, le=15, description="five_year model: years of explicit revenue and FCF projection."
    )
    explicit_years: int = Field(
        default=10,
        ge=1,
        le=15,
        description="Fundamental DCF and dividend-discount model: years of explicit projection before the "
        "terminal value (long enough for growth to fade).",
    )
    high_growth_years: int = Field(
        default=5, ge=0, le=15, description="Fundamental model: years at year-1 growth before the fade to terminal."
    )
    target_operating_margin: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Fundamental model: operating margin reached in year N for every company; null = long_run_margin.",
    )
    long_run_margin: Literal["latest", "history"] = Field(
        default="latest",
        description="Fundamental model, when target_operating_margin is null: the margin reached in year N is the "
        "latest year's ('latest': two years of history are not a cycle) or the average over "
        "fcf_margin_history_years ('history').",
    )
    sales_to_capital: float | None = Field(
        default=None,
        gt=0.0,
        le=50.0,
        description="Fundamental model: revenue per dollar of invested capital for every company; null = the "
        "company's revenue / (equity + debt - cash), or the peers' median when that capital is not positive.",
    )
    terminal_roic: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Fundamental model: return on new capital after year N; null = the WACC (no value from growth "
        "after year N).",
    )
    terminal_growth: float = Field(
        default=0.025,
        ge=-0.02,
        le=0.06,
        description="Perpetual growth after the projection (Gordon growth model).",
    )
    mid_year_convention: bool = Field(
        default=False,
        description="Discount each year's FCF from mid-year (t - 0.5) instead of year end; the terminal "
        "value is always discounted from the end of the last projected year.",
    )
    terminal_value_method: TerminalValueMethod = Field(
        default="gordon",
        description="Terminal value the DCF value uses: 'gordon' (perpetual growth), 'exit_multiple' or "
        "'average' of the two; both are always reported.",
    )
    exit_multiple: float | None = Field(
        default=None,
        gt=0.0,
        le=100.0,
        description="Exit EV/EBITDA multiple; null = the peers' median EV/EBITDA.",
    )
    initial_revenue_growth: float | None = Field(
        default=None,
        ge=-0.5,
        le=1.0,
        description="Year-1 revenue growth for every company; null = historical revenue CAGR.",
    )
    growth_history_years: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Most recent years of revenue history the CAGR is measured over (at most).",
    )
    min_initial_growth: float = Field(
        default=-0.10,
        ge=-0.5,
        le=1.0,
        description="Lower limit on the historical CAGR used as first-year growth.",
    )
    max_initial_growth: float = Field(
        default=0.25,
        ge=-0.5,
        le=1.0,
        description="Upper limit on the historical CAGR used as first-year growth.",
    )
    fcf_margin: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Unlevered FCF / revenue in every projected year; null = recent historical average.",
    )
    fcf_margin_history_years: int = Field(
        default=3, ge=1, le=10, description="Most recent fiscal years averaged for the historical FCF margin."
    )
    min_fcf_margin: float = Field(
        default=-0.5, ge=-1.0, le=1.0, description="Lower limit on the historical FCF margin."
    )
    max_fcf_margin: float = Field(default=0.7, ge=-1.0, le=1.0, description="Upper limit on the historical FCF margin.")

    # ---- comparables
    min_peers: int = Field(
        default=3,
        ge=1,
        le=50,
        description="Fewest peers in the GICS sub-industry before peers are drawn from the whole sector.",
    )
    comps_weight_ev_ebitda: float = Field(
        default=0.4,
        ge=0.0,
        le=1.0,
        description="Weight of the EV/EBITDA-implied value in the comparables value.",
    )
    comps_weight_pe: float = Field(
        default=0.4, ge=0.0, le=1.0, description="Weight of the P/E-implied value in the comparables value."
    )
    comps_weight_ev_sales: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Weight of the EV/Sales-implied value in the comparables value.",
    )

    comps_weight_pb: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Banks and insurers: weight of the P/B-implied value (their comparables use P/E and P/B only).",
    )

    # ---- price target and rating
    dcf_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Price target = dcf_weight * DCF value + (1 - dcf_weight) * comparables value.",
    )
    buy_threshold: float = Field(
        default=0.15, ge=-0.5, le=2.0, description="Buy when upside to the price target is at least this."
    )
    sell_threshold: float = Field(
        default=0.0,
        ge=-0.5,
        le=2.0,
        description="Sell when upside is below this; Hold between sell and buy thresholds.",
    )

    # ---- sensitivity and scenarios
    sensitivity_wacc_step: float = Field(
        default=0.005, gt=0.0, le=0.05, description="WACC step between rows of the sensitivity table."
    )
    sensitivity_growth_step: float = Field(
        default=0.005,
        gt=0.0,
        le=0.02,
        description="Terminal-growth step between columns of the sensitivity table.",
    )
    sensitivity_steps: int = Field(
        default=2, ge=1, le=5, description="Steps either side of the base case: the table is (2n+1) x (2n+1)."
    )
    bull: ScenarioShift = Field(default_factory=_bull, description="Bull-case shifts added to the base case.")
    bear: ScenarioShift = Field(default_factory=_bear, description="Bear-case shifts added to the base case.")

    @model_validator(mode="after")
    def _consistent(self) -> ValuationAssumptions:
        problems: list[str] = []
        for low, high in (
            ("sell_threshold", "buy_threshold"),
            ("min_cost_of_debt", "max_cost_of_debt"),
            ("min_tax_rate", "max_tax_rate"),
            ("min_initial_growth", "max_initial_growth"),
            ("min_fcf_margin", "max_fcf_margin"),
        ):
            if getattr(self, low) > getattr(self, high):
                problems.append(f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})")
        if self.comps_weight_ev_ebitda + self.comps_weight_pe + self.comps_weight_ev_sales <= 0:
            problems.append(
                "at least one of comps_weight_ev_ebitda, comps_weight_pe, comps_weight_ev_sales must be > 0"
            )
        # A bull case that is worse than the bear case on any lever is a typo, not a view.
        for lever in ("revenue_growth", "fcf_margin", "exit_multiple"):
            if getattr(self.bull, lever) < getattr(self.bear, lever):
                problems.append(f"bull.{lever} must be >= bear.{lever}")
        if self.bull.wacc > self.bear.wacc:
            problems.append("bull.wacc must be <= bear.wacc (a bull case discounts at a lower rate)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def comps_weight_total(self) -> float:
        """Sum of the three comparables weights (they are re-normalised, so need not add to 1)."""
        return self.comps_weight_ev_ebitda + self.comps_weight_pe + self.comps_weight_ev_sales

    def rating_bands(self) -> str:
        """The rating bands in words, e.g. 'Buy >= +15.0%; Hold +0.0% to +15.0%; Sell < +0.0%'."""
        buy, sell = self.buy_threshold, self.sell_threshold
        return f"Buy >= {buy:+.1%}; Hold {sell:+.1%} to {buy:+.1%}; Sell < {sell:+.1%}"
