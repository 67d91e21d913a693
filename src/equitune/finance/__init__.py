"""The finance engine: pure functions from a ``Company`` record (and its peers) to valuation results.

No files, network, clocks or randomness: values in, values out. ``analyze_company`` is the one call most
code needs; the pieces (ratios, WACC, DCF, comparables, price target) are public for reports and tests.
"""

from __future__ import annotations

from equitune.finance.analysis import CompanyAnalysis, analyze_company
from equitune.finance.assumptions import ScenarioShift, TerminalValueMethod, ValuationAssumptions
from equitune.finance.comparables import (
    ComparablesResult,
    MultipleSummary,
    PeerExclusion,
    PeerMultiples,
    combine_implied_values,
    compare_with_peers,
    enterprise_value,
    implied_value_per_share,
    peer_multiples,
    select_peers,
    shifted_comparables_value,
)
from equitune.finance.dcf import (
    DCFInputs,
    DCFResult,
    ProjectionYear,
    SensitivityTable,
    dcf_inputs,
    discounted_cash_flow,
    exit_multiple_terminal_value,
    gordon_terminal_value,
    growth_path,
    historical_margin,
    run_dcf,
    sensitivity_table,
    unlevered_free_cash_flow,
)
from equitune.finance.inputs import MarketData, market_data
from equitune.finance.ratios import FinancialRatios, cagr, compute_ratios, growth, revenue_cagr
from equitune.finance.target import (
    PriceTarget,
    Rating,
    Scenario,
    blend_values,
    price_target,
    rating_for,
    run_scenarios,
    shift_inputs,
    upside_to,
)
from equitune.finance.wacc import (
    WACCResult,
    after_tax_cost_of_debt,
    compute_wacc,
    cost_of_equity,
    resolve_cost_of_debt,
    resolve_tax_rate,
    weighted_average_cost_of_capital,
)

__all__ = [
    "CompanyAnalysis",
    "ComparablesResult",
    "DCFInputs",
    "DCFResult",
    "FinancialRatios",
    "MarketData",
    "MultipleSummary",
    "PeerExclusion",
    "PeerMultiples",
    "PriceTarget",
    "ProjectionYear",
    "Rating",
    "Scenario",
    "ScenarioShift",
    "SensitivityTable",
    "TerminalValueMethod",
    "ValuationAssumptions",
    "WACCResult",
    "after_tax_cost_of_debt",
    "analyze_company",
    "blend_values",
    "cagr",
    "combine_implied_values",
    "compare_with_peers",
    "compute_ratios",
    "compute_wacc",
    "cost_of_equity",
    "dcf_inputs",
    "discounted_cash_flow",
    "enterprise_value",
    "exit_multiple_terminal_value",
    "gordon_terminal_value",
    "growth",
    "growth_path",
    "historical_margin",
    "implied_value_per_share",
    "market_data",
    "peer_multiples",
    "price_target",
    "rating_for",
    "resolve_cost_of_debt",
    "resolve_tax_rate",
    "revenue_cagr",
    "run_dcf",
    "run_scenarios",
    "select_peers",
    "sensitivity_table",
    "shift_inputs",
    "shifted_comparables_value",
    "unlevered_free_cash_flow",
    "upside_to",
    "weighted_average_cost_of_capital",
]
