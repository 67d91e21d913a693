"""Reverse DCF: what the share price implies, under the DCF's own model.

A DCF turns assumptions into a value; the reverse DCF turns the market price back into the one assumption that
would make the DCF value equal it, holding every other input as the DCF has it (Mauboussin and Rappaport,
*Expectations Investing*, 2001; "market-implied expectations"). Two questions are answered:

* **implied growth**: the year-1 revenue growth g0 at which the DCF value per share equals the price, with the same
  linear fade from g0 to the terminal growth over the projection, the same FCF margin, WACC, terminal value and
  equity bridge;
* **implied FCF margin**: the free-cash-flow margin at which it equals the price, with the model's own growth path.

The DCF value per share rises with g0 when the FCF margin is positive (more revenue, more cash flow) and rises with
the margin, so each answer is found by bisection on a bracket: g0 in [-90%, +500%], margin in [-100%, +100%]. A
price outside what the bracket can produce, or a non-positive margin (growth then destroys value, so no growth
"justifies" a price), gives no answer and says why. Pure: values in, values out.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field

from equitune.finance.base import ResultModel, number_word
from equitune.finance.dcf import DCFInputs, exit_multiple_terminal_value, fundamental_value_per_share, growth_path

GROWTH_BRACKET = (-0.9, 5.0)
MARGIN_BRACKET = (-1.0, 1.0)
_ITERATIONS = 60  # the bracket halves each step: 5.9 / 2**60 is far below any printed precision


class ReverseDCF(ResultModel):
    """The growth and the margin the share price implies under the company's DCF model."""

    price: float = Field(description="Share price the DCF is solved against.")
    model_initial_growth: float = Field(description="Year-1 revenue growth the DCF uses.")
    implied_initial_growth: float | None = Field(description="Year-1 growth at which DCF value = price.")
    model_fcf_margin: float = Field(
        description="The margin lever the DCF uses: the FCF margin (five_year) or the long-run operating margin "
        "(fundamental)."
    )
    implied_fcf_margin: float | None = Field(description="That margin at which DCF value = price (model growth).")
    margin_kind: str = Field(default="FCF margin", description="'FCF margin' or 'long-run operating margin'.")
    terminal_growth: float = Field(description="Growth the path fades to (unchanged).")
    projection_years: int = Field(description="Years of the fade (unchanged).")
    wacc: float = Field(description="Discount rate (unchanged).")
    notes: list[str] = Field(default_factory=list, description="Why an answer is missing, in words.")

    def statement(self) -> str:
        """One sentence a reader can put next to the target."""
        implied = []
        if self.implied_initial_growth is not None:
            implied.append(
                f"first-year revenue growth of {self.implied_initial_growth:.1%} (the DCF uses "
                f"{self.model_initial_growth:.1%}), fading to {self.terminal_growth:.1%} over "
                f"{number_word(self.projection_years)} years at the DCF's {self.model_fcf_margin:.1%} "
                f"{self.margin_kind}"
            )
        if self.implied_fcf_margin is not None:
            implied.append(
                f"{'an' if self.margin_kind.startswith('FCF') else 'a'} {self.margin_kind} of "
                f"{self.implied_fcf_margin:.1%} on the DCF's growth path (the DCF uses "
                f"{self.model_fcf_margin:.1%})"
            )
        text = "Implied by the price (reverse DCF)"
        if implied:
            # The discount rate first: a figure after a margin would read as that margin.
            text += f": at the DCF's WACC of {self.wacc:.1%}, the ${self.price:,.2f} share price implies "
            text += ", or ".join(implied)
        if self.notes:
            text += ("; " if implied else ": ") + "; ".join(self.notes)
        return text + "."


def dcf_value_per_share(inputs: DCFInputs, initial_growth: float, fcf_margin: float) -> float:
    """The DCF value per share of ``inputs`` with year-1 growth and the margin lever (FCF margin, or the
    fundamental model's long-run operating margin) replaced: the arithmetic of ``run_dcf`` (same growth path,
    discounting, terminal value and bridge) without building its result models."""
    if inputs.model == "fundamental":
        return fundamental_value_per_share(inputs, initial_growth, fcf_margin)
    w, g, n = inputs.wacc, inputs.terminal_growth, inputs.projection_years
    revenue, pv_sum, fcf = inputs.base_revenue, 0.0, 0.0
    for t, rate in enumerate(growth_path(initial_growth, g, n), start=1):
        revenue *= 1.0 + rate
        fcf = revenue * fcf_margin
        period = t - 0.5 if inputs.mid_year_convention else float(t)
        pv_sum += fcf * (1.0 + w) ** -period
    gordon = fcf * (1.0 + g) / (w - g)
    ebitda = revenue * inputs.ebitda_margin if inputs.ebitda_margin is not None else None
    exit_value = exit_multiple_terminal_value(ebitda, inputs.exit_multiple)
    if inputs.terminal_value_method == "exit_multiple" and exit_value is not None:
        terminal = exit_value
    elif inputs.terminal_value_method == "average" and exit_value is not None:
        terminal = (gordon + exit_value) / 2.0
    else:
        terminal = gordon
    equity = pv_sum + terminal * (1.0 + w) ** -n - inputs.total_debt + inputs.cash
    return equity / inputs.diluted_shares


def _solve(value_at: Callable[[float], float], target: float, low: float, high: float) -> float | None:
    """x in [low, high] with value_at(x) = target for an increasing value_at; None when target is outside."""
    at_low, at_high = value_at(low), value_at(high)
    if not at_low <= target <= at_high:
        return None
    for _ in range(_ITERATIONS):
        middle = (low + high) / 2.0
        if value_at(middle) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def reverse_dcf(inputs: DCFInputs, price: float) -> ReverseDCF:
    """The year-1 growth and the FCF margin at which ``inputs``' DCF value per share equals ``price`` (see the
    module docstring for what is held fixed, the brackets and when an answer is missing)."""
    notes: list[str] = []
    growth: float | None = None
    fundamental = inputs.model == "fundamental"
    lever = (inputs.target_operating_margin or 0.0) if fundamental else inputs.fcf_margin
    kind = "long-run operating margin" if fundamental else "FCF margin"
    # In the fundamental model growth adds value only while the margin's after-tax return on the capital it needs
    # (margin x (1 - tax) x sales-to-capital) exceeds the discount rate; the value need not rise with growth.
    grows = lever > 0 and (
        not fundamental or lever * (1 - inputs.tax_rate) * (inputs.sales_to_capital or 0.0) > inputs.wacc
    )
    if price <= 0:
        notes.append(f"price {price:,.2f} is not positive")
    elif not grows:
        if fundamental and lever > 0:
            notes.append(
                f"at a {lever:.1%} operating margin and {inputs.sales_to_capital or 0:.2f} sales-to-capital new "
                "revenue "
                f"earns less than the {inputs.wacc:.1%} WACC, so more growth lowers the value"
            )
        else:
            notes.append(f"{kind} {lever:.1%} is not positive: more growth lowers the value")
    else:
        growth = _solve(lambda g0: dcf_value_per_share(inputs, g0, lever), price, *GROWTH_BRACKET)
        if growth is None:
            low, high = (dcf_value_per_share(inputs, g0, lever) for g0 in GROWTH_BRACKET)
            side = "above" if price > high else "below"
            # The bracket and its values are search settings, not figures of the company: said in words.
            notes.append(
                f"the price is {side} every DCF value that any first-year growth from a fall of nine tenths to a "
                "sixfold "
                "rise gives"
            )
    margin: float | None = None
    if price > 0:
        margin = _solve(lambda m: dcf_value_per_share(inputs, inputs.initial_growth, m), price, *MARGIN_BRACKET)
        if margin is None:
            notes.append(f"no {kind} short of taking all of revenue gives the price on the DCF's growth path")
    return ReverseDCF(
        price=price,
        model_initial_growth=inputs.initial_growth,
        implied_initial_growth=growth,
        model_fcf_margin=lever,
        implied_fcf_margin=margin,
        margin_kind=kind,
        terminal_growth=inputs.terminal_growth,
        projection_years=inputs.projection_years,
        wacc=inputs.wacc,
        notes=notes,
    )
