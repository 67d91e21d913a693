"""Market-condition variants: named, stated changes to the valuation assumptions, re-run by the engine.

Each condition says exactly what it changes (e.g. the risk-free rate +100 bp; year-1 revenue growth 8
points below the base case), so training examples and reports can quote the computed effect rather than
describe it vaguely.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from equitune.finance.analysis import CompanyAnalysis
from equitune.finance.assumptions import ValuationAssumptions

ConditionName = Literal["base", "rates_up_100bp", "rates_down_100bp", "recession", "risk_off", "expansion"]


class MarketCondition(BaseModel):
    """A named change to the assumptions; shifts are added to the base case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ConditionName
    title: str = Field(description="Short human title, e.g. 'Rates +100 bp'.")
    risk_free_shift: float = Field(0.0, description="Added to the risk-free rate.")
    equity_risk_premium_shift: float = Field(0.0, description="Added to the equity risk premium.")
    revenue_growth_shift: float = Field(0.0, description="Added to the base case's year-1 revenue growth.")
    fcf_margin_shift: float = Field(0.0, description="Added to the base case's FCF margin.")

    def apply(self, assumptions: ValuationAssumptions, base: CompanyAnalysis) -> ValuationAssumptions:
        """The assumptions under this condition, anchored on the base analysis' growth and margin."""
        update: dict[str, float] = {}
        if self.risk_free_shift:
            update["risk_free_rate"] = max(0.0, assumptions.risk_free_rate + self.risk_free_shift)
        if self.equity_risk_premium_shift:
            update["equity_risk_premium"] = assumptions.equity_risk_premium + self.equity_risk_premium_shift
        if base.dcf is not None and self.revenue_growth_shift:
            growth = base.dcf.inputs.initial_growth + self.revenue_growth_shift
            update["initial_revenue_growth"] = min(max(growth, -0.5), 1.0)
        if base.dcf is not None and self.fcf_margin_shift:
            margin = base.dcf.inputs.fcf_margin + self.fcf_margin_shift
            update["fcf_margin"] = min(max(margin, -1.0), 1.0)
        return assumptions.model_copy(update=update)


CONDITIONS: dict[str, MarketCondition] = {
    c.name: c
    for c in (
        MarketCondition(name="base", title="Base case"),
        MarketCondition(name="rates_up_100bp", title="Rates +100 bp", risk_free_shift=0.01),
        MarketCondition(name="rates_down_100bp", title="Rates -100 bp", risk_free_shift=-0.01),
        MarketCondition(
            name="recession",
            title="Recession revenue shock",
            revenue_growth_shift=-0.08,
            fcf_margin_shift=-0.02,
        ),
        MarketCondition(
            name="risk_off", title="Risk-off (equity risk premium +150 bp)", equity_risk_premium_shift=0.015
        ),
        MarketCondition(name="expansion", title="Demand expansion", revenue_growth_shift=0.04, fcf_margin_shift=0.01),
    )
}
