"""Everything one training example may say about a company, computed once by the finance engine.

An ``ExampleContext`` pairs a company with a market condition: the engine's analysis under that condition,
the base-case analysis, next-year estimates, the peers and their ratios, the company's standing among them
(``IndustrySummary``), and the ``FactSheet`` of every number among them. Templates read only from here, so
every figure they write is a fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from equitune.data.facts import PEER_FIELDS, FactSheet, add_company, add_model
from equitune.finance import (
    CompanyAnalysis,
    FinancialRatios,
    ValuationAssumptions,
    analyze_company,
    compute_ratios,
)
from equitune.finance.conditions import CONDITIONS, MarketCondition
from equitune.finance.estimates import Estimates, next_year_estimates
from equitune.finance.industry import IndustrySummary, industry_summary
from equitune.market.models import Company


@dataclass(frozen=True)
class ExampleContext:
    """One company under one market condition, with every engine output a template may quote."""

    company: Company
    condition: MarketCondition
    analysis: CompanyAnalysis
    base: CompanyAnalysis
    estimates: Estimates
    peers: tuple[Company, ...]
    peer_ratios: dict[str, FinancialRatios]
    facts: FactSheet = field(repr=False)
    industry: IndustrySummary = field(repr=False)

    @property
    def ticker(self) -> str:
        return self.company.ticker

    @property
    def rating(self) -> str:
        """Buy / Hold / Sell under this condition ('Not rated' when no target could be formed)."""
        return self.analysis.target.rating or "Not rated"

    @property
    def is_base(self) -> bool:
        return self.condition.name == "base"


def build_context(
    company: Company,
    universe: list[Company],
    condition: MarketCondition | None = None,
    assumptions: ValuationAssumptions | None = None,
    base: CompanyAnalysis | None = None,
) -> ExampleContext:
    """Run the engine for ``company`` under ``condition`` (default: base case) and collect its facts."""
    a = assumptions or ValuationAssumptions()
    condition = condition or CONDITIONS["base"]
    base = base or analyze_company(company, universe, a)
    analysis = base if condition.name == "base" else analyze_company(company, universe, condition.apply(a, base))
    by_ticker = {c.ticker: c for c in universe}
    peers = tuple(by_ticker[p.ticker] for p in analysis.comparables.peers if p.ticker in by_ticker)
    peer_ratios = {p.ticker: compute_ratios(p, a) for p in peers}
    estimates = next_year_estimates(company, analysis)
    industry = industry_summary(company, list(peers), peer_ratios, a)

    facts = FactSheet(company.ticker)
    add_company(facts, company)
    add_model(facts, "analysis", analysis)
    if condition.name != "base":
        add_model(facts, "base", base)
        add_model(facts, "condition", condition)
    add_model(facts, "estimates", estimates)
    for peer in peers:
        add_company(facts, peer, prefix=f"peer.{peer.ticker}", fields=PEER_FIELDS, years=1)
        add_model(facts, f"peer.{peer.ticker}.ratios", peer_ratios[peer.ticker])
    add_model(facts, "industry", industry)
    facts.freeze()  # the sheet is complete: index it now, with the engine's work, not on the first figure check
    return ExampleContext(company, condition, analysis, base, estimates, peers, peer_ratios, facts, industry)


def build_contexts(
    universe: list[Company],
    conditions: list[str] | None = None,
    assumptions: ValuationAssumptions | None = None,
) -> list[ExampleContext]:
    """Contexts for every company in ``universe`` under each named condition (default: all conditions)."""
    names = conditions or list(CONDITIONS)
    contexts: list[ExampleContext] = []
    for company in sorted(universe, key=lambda c: c.ticker):
        base = analyze_company(company, universe, assumptions or ValuationAssumptions())
        for name in names:
            contexts.append(build_context(company, universe, CONDITIONS[name], assumptions, base))
    return contexts
