"""Price target, upside, rating, and bull / base / bear scenarios.

* **Price target** = ``dcf_weight * intrinsic value per share + (1 - dcf_weight) * comparables value per share``
  (default 50 / 50). The intrinsic value comes from the method suited to the company (``finance.sector_models``):
  the DCF, the excess-return model (banks, insurers) or the dividend-discount model (utilities, REITs); the
  ``dcf_*`` fields hold it, ``intrinsic_method`` / ``intrinsic_label`` name it. A value is *meaningful* when it
  exists and is positive (for the DCF: enterprise and equity value both positive); one that is not is
  **excluded** (its field is ``None``, the reason in ``excluded``) and the other is used alone, flagged; when
  neither is, there is no target and no rating.
* **Upside** = price target / price - 1.
* **Rating**: Buy when upside >= ``buy_threshold``, Sell when upside < ``sell_threshold``, otherwise Hold.
* **Scenarios**: each re-runs the DCF with the scenario's shifts added to the base inputs (year-1 revenue
  growth, FCF margin, WACC, exit multiple), moves the peers' median EV/EBITDA by the exit-multiple shift for
  the comparables value, and blends the two like the price target. The base scenario is the price target.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from pydantic import Field

from equitune.errors import FinanceError
from equitune.finance.assumptions import ScenarioShift, ValuationAssumptions
from equitune.finance.base import ResultModel, safe_div
from equitune.finance.comparables import ComparablesResult, shifted_comparables_value
from equitune.finance.dcf import DCFInputs, DCFResult, run_dcf
from equitune.finance.sector_models import METHOD_LABELS, IntrinsicMethod

Rating = Literal["Buy", "Hold", "Sell"]
TargetMethod = Literal["blend", "dcf_only", "comps_only", "none"]
ScenarioName = Literal["bear", "base", "bull"]


class PriceTarget(ResultModel):
    """The price target, how it was blended, the upside to it and the rating."""

    price: float = Field(description="Share price the upside is measured from.")
    intrinsic_method: IntrinsicMethod = Field(default="dcf", description="'dcf', 'excess_return' or 'ddm'.")
    intrinsic_label: str = Field(default="DCF", description="The intrinsic method in words.")
    dcf_value_per_share: float | None = Field(
        description="Intrinsic (DCF, excess-return or dividend-discount) value per share; None when excluded."
    )
    comps_value_per_share: float | None = Field(description="Comparables value per share; None when excluded.")
    dcf_meaningful: bool = Field(description="The intrinsic value exists and is positive (DCF: EV and equity too).")
    comps_meaningful: bool = Field(description="Comparables value exists and is positive.")
    dcf_weight: float = Field(description="Weight the DCF value actually got.")
    comps_weight: float = Field(description="Weight the comparables value actually got.")
    method: TargetMethod = Field(description="'blend', 'dcf_only', 'comps_only' or 'none'.")
    price_target: float | None = Field(description="Price target per share (None when neither value works).")
    upside: float | None = Field(description="price_target / price - 1.")
    rating: Rating | None = Field(description="Buy / Hold / Sell from the rating bands.")
    rating_bands: str = Field(description="The bands in words.")
    blend: str = Field(description="How the target was formed, in words.")
    excluded: list[str] = Field(default_factory=list, description="Values left out of the target, with the reason.")
    flags: list[str] = Field(default_factory=list, description="Fallbacks and caveats.")


class Scenario(ResultModel):
    """One scenario: the assumptions it ran with and the value per share it gives."""

    name: ScenarioName
    shift: ScenarioShift = Field(description="Shifts added to the base case (zero for base).")
    growth_kind: Literal["revenue", "dividend"] = Field(
        default="revenue", description="What initial_growth grows: revenue (DCF) or the dividend (dividend-discount)."
    )
    rate_kind: Literal["wacc", "cost_of_equity"] = Field(
        default="wacc", description="What the wacc field holds: the WACC (DCF) or the cost of equity (sector models)."
    )
    initial_growth: float | None = Field(description="Year-1 revenue growth used.")
    fcf_margin: float | None = Field(description="FCF margin used.")
    wacc: float | None = Field(description="WACC used.")
    exit_multiple: float | None = Field(description="Exit EV/EBITDA used (None when unavailable).")
    dcf_value_per_share: float | None = Field(description="Scenario intrinsic value per share (None if excluded).")
    dcf_meaningful: bool = Field(description="Scenario intrinsic value meaningful.")
    comps_value_per_share: float | None = Field(description="Comparables value with the multiple shift.")
    method: TargetMethod = Field(description="How the scenario value was blended.")
    value_per_share: float | None = Field(description="Blended scenario value per share.")
    upside: float | None = Field(description="value_per_share / price - 1.")
    issues: list[str] = Field(default_factory=list, description="Why a value is missing, when it is.")


def rating_for(upside: float, assumptions: ValuationAssumptions) -> Rating:
    """Buy when ``upside >= buy_threshold``, Sell when ``upside < sell_threshold``, else Hold."""
    if upside >= assumptions.buy_threshold:
        return "Buy"
    if upside < assumptions.sell_threshold:
        return "Sell"
    return "Hold"


def upside_to(target: float | None, price: float) -> float | None:
    """``target / price - 1``; ``None`` without a target."""
    ratio = safe_div(target, price)
    return None if ratio is None else ratio - 1.0


def blend_values(
    dcf_value: float | None, comps_value: float | None, dcf_weight: float, label: str = "DCF"
) -> tuple[float | None, TargetMethod, float, float, list[str]]:
    """Blend a (meaningful) DCF value and comparables value with ``dcf_weight``; pass ``None`` for a value
    that is not meaningful and the other is used alone. Returns the value, the method, the weights actually
    used and flags describing any fallback."""
    dcf_ok = dcf_value is not None and dcf_value > 0
    comps_ok = comps_value is not None and comps_value > 0
    if dcf_ok and comps_ok and dcf_value is not None and comps_value is not None:
        method: TargetMethod = "blend"
        if dcf_weight == 1.0:
            method = "dcf_only"
        elif dcf_weight == 0.0:
            method = "comps_only"
        return dcf_weight * dcf_value + (1 - dcf_weight) * comps_value, method, dcf_weight, 1 - dcf_weight, []
    if dcf_ok and dcf_value is not None:
        return (
            dcf_value,
            "dcf_only",
            1.0,
            0.0,
            ["comparables value not meaningful: target is the DCF value alone"],
        )
    if comps_ok and comps_value is not None:
        return (
            comps_value,
            "comps_only",
            0.0,
            1.0,
            [f"{label} value not meaningful: target is the comparables value alone"],
        )
    return (
        None,
        "none",
        0.0,
        0.0,
        [f"neither the {label} nor the comparables value is meaningful: no price target"],
    )


def price_target(
    price: float,
    dcf: DCFResult | None,
    comps: ComparablesResult,
    assumptions: ValuationAssumptions | None = None,
    intrinsic: tuple[IntrinsicMethod, float | None, bool, list[str]] | None = None,
) -> PriceTarget:
    """The price target blended from the intrinsic value and ``comps``, the upside from ``price`` and the
    rating from the bands. The intrinsic value is ``dcf`` (None when the DCF could not run) unless
    ``intrinsic`` = (method, value, meaningful, reasons) gives another method's; a value that is not meaningful
    is excluded with its reason (see the module docstring)."""
    a = assumptions or ValuationAssumptions()
    if intrinsic is None:
        method_name: IntrinsicMethod = "dcf"
        raw_value = dcf.value_per_share if dcf is not None else None
        ok = dcf is not None and dcf.meaningful
        reasons = list(dcf.issues) if dcf is not None else ["the DCF could not run"]
    else:
        method_name, raw_value, ok, reasons = intrinsic
    # The reason is stated without the excluded figures: a value that is not meaningful is never printed.
    reasons = [re.sub(r" -?\$?[\d,]+(?:\.\d+)?%?(?= is not positive)", "", r) for r in reasons]
    label = METHOD_LABELS[method_name]
    excluded: list[str] = []
    if raw_value is not None and not ok:
        why = "; ".join(reasons) if reasons else "not positive"
        # The value itself is not repeated: a negative or meaningless value is never printed as a value.
        excluded.append(f"{label} value excluded from the target: {why}")
    elif raw_value is None:
        excluded.append(f"no {label} value: {'; '.join(reasons) if reasons else 'it could not be computed'}")
    comps_ok = comps.meaningful and comps.value_per_share is not None and comps.value_per_share > 0
    if not comps_ok:
        excluded.append("no comparables value: " + ("; ".join(comps.issues) or "no multiple gives a positive value"))
    value, method, w_dcf, w_comps, flags = blend_values(
        raw_value if ok else None, comps.value_per_share if comps_ok else None, a.dcf_weight, label
    )
    upside = upside_to(value, price)
    describe = {
        "blend": f"{w_dcf:.0%} {label} + {w_comps:.0%} comparables",
        "dcf_only": f"{label} value alone",
        "comps_only": "comparables value alone",
        "none": "no price target",
    }[method]
    return PriceTarget(
        price=price,
        intrinsic_method=method_name,
        intrinsic_label=label,
        dcf_value_per_share=raw_value if ok else None,
        comps_value_per_share=comps.value_per_share if comps_ok else None,
        dcf_meaningful=ok,
        comps_meaningful=comps_ok,
        dcf_weight=w_dcf,
        comps_weight=w_comps,
        method=method,
        price_target=value,
        upside=upside,
        rating=rating_for(upside, a) if upside is not None else None,
        rating_bands=a.rating_bands(),
        blend=describe,
        excluded=excluded,
        flags=flags,
    )


def shift_inputs(inputs: DCFInputs, shift: ScenarioShift) -> DCFInputs:
    """DCF inputs with a scenario's shifts added (an exit multiple pushed to <= 0 becomes unavailable)."""
    multiple = inputs.exit_multiple + shift.exit_multiple if inputs.exit_multiple is not None else None
    target = inputs.target_operating_margin
    if inputs.model == "fundamental" and target is not None:
        target += shift.fcf_margin  # the fundamental model's margin lever is the long-run operating margin
    return inputs.model_copy(
        update={
            "initial_growth": inputs.initial_growth + shift.revenue_growth,
            "fcf_margin": inputs.fcf_margin + (shift.fcf_margin if inputs.model == "five_year" else 0.0),
            "target_operating_margin": target,
            "wacc": inputs.wacc + shift.wacc,
            "exit_multiple": multiple if multiple is not None and multiple > 0 else None,
        }
    )


IntrinsicAt = Callable[[ScenarioShift], tuple[float | None, bool, list[str], float | None, float | None]]
"""A non-DCF method re-run under a scenario shift: (value, meaningful, issues, growth used, discount rate used)."""


def run_scenario(
    name: ScenarioName,
    shift: ScenarioShift,
    inputs: DCFInputs | None,
    comps: ComparablesResult,
    price: float,
    assumptions: ValuationAssumptions,
    intrinsic_at: IntrinsicAt | None = None,
    label: str = "DCF",
) -> Scenario:
    """One scenario: the DCF re-run on ``inputs`` with ``shift`` (``inputs`` None when the base DCF could not
    be set up), or ``intrinsic_at(shift)`` for another method, and the comparables value with the EV/EBITDA
    shift, blended like the price target."""
    if intrinsic_at is not None:
        value_i, ok_i, issues_i, growth_i, rate_i = intrinsic_at(shift)
        comps_value = shifted_comparables_value(comps, shift.exit_multiple, assumptions)
        value, method, _, _, flags = blend_values(value_i if ok_i else None, comps_value, assumptions.dcf_weight, label)
        return Scenario(
            name=name,
            shift=shift,
            growth_kind="dividend",
            rate_kind="cost_of_equity",
            initial_growth=growth_i,
            fcf_margin=None,
            wacc=rate_i,
            exit_multiple=None,
            dcf_value_per_share=value_i if ok_i else None,
            dcf_meaningful=ok_i,
            comps_value_per_share=comps_value,
            method=method,
            value_per_share=value,
            upside=upside_to(value, price),
            issues=issues_i + flags,
        )
    issues: list[str] = []
    shifted = shift_inputs(inputs, shift) if inputs is not None else None
    dcf: DCFResult | None = None
    if shifted is None:
        issues.append("no DCF inputs (see the DCF error)")
    else:
        try:
            dcf = run_dcf(shifted)
        except FinanceError as exc:
            issues.append(f"DCF: {exc}")
    if dcf is not None:
        issues.extend(f"DCF: {issue}" for issue in dcf.issues)
    comps_value = shifted_comparables_value(comps, shift.exit_multiple, assumptions)
    dcf_ok = dcf is not None and dcf.meaningful
    value, method, _, _, flags = blend_values(
        dcf.value_per_share if dcf is not None and dcf_ok else None, comps_value, assumptions.dcf_weight
    )
    return Scenario(
        name=name,
        shift=shift,
        initial_growth=shifted.initial_growth if shifted is not None else None,
        fcf_margin=shifted.fcf_margin if shifted is not None else None,
        wacc=shifted.wacc if shifted is not None else None,
        exit_multiple=shifted.exit_multiple if shifted is not None else None,
        dcf_value_per_share=dcf.value_per_share if dcf is not None and dcf_ok else None,
        dcf_meaningful=dcf_ok,
        comps_value_per_share=comps_value,
        method=method,
        value_per_share=value,
        upside=upside_to(value, price),
        issues=issues + flags,
    )


def run_scenarios(
    inputs: DCFInputs | None,
    comps: ComparablesResult,
    price: float,
    assumptions: ValuationAssumptions | None = None,
    intrinsic_at: IntrinsicAt | None = None,
    label: str = "DCF",
) -> list[Scenario]:
    """Bear, base and bull scenarios (in that order); the base scenario reproduces the price target."""
    a = assumptions or ValuationAssumptions()
    cases: tuple[tuple[ScenarioName, ScenarioShift], ...] = (
        ("bear", a.bear),
        ("base", ScenarioShift()),
        ("bull", a.bull),
    )
    return [run_scenario(n, shift, inputs, comps, price, a, intrinsic_at, label) for n, shift in cases]
