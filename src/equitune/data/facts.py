"""The fact sheet: every number that may appear in research about one company, named and typed.

A ``FactSheet`` collects the company's reported figures and the finance engine's outputs for it (ratios,
WACC, DCF and sensitivity, peers and their multiples, target, scenarios, estimates, market-condition
results), each as a named ``Fact`` with a kind that says how it is written in text. ``check`` tells whether a
figure found in text matches a fact within the rounding it was written to, and which facts it matches:
that is what makes every figure in a training response traceable, and what flags a model's invented ones.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from equitune.data.numbers import Figure

FactKind = Literal["money", "per_share", "fraction", "multiple", "shares", "number", "year", "date"]

# Which fact kinds a figure of each kind may match, and the factor from the fact's unit to the figure's.
_COMPATIBLE: dict[str, tuple[tuple[str, float], ...]] = {
    "currency": (("money", 1e6), ("per_share", 1.0)),
    "percent": (("fraction", 1.0),),
    "bp": (("fraction", 1.0),),
    "multiple": (("multiple", 1.0),),
    "number": (("number", 1.0), ("shares", 1e6), ("money", 1e6), ("per_share", 1.0), ("multiple", 1.0)),
    "year": (("year", 1.0),),
    "date": (("date", 1.0),),
}


@dataclass(frozen=True)
class Fact:
    """A named number: ``value`` in the fact's own unit (money and shares in millions, fractions as 0.123)."""

    name: str
    value: float
    kind: FactKind
    signed: bool = True


@dataclass
class FactSheet:
    """All facts about one company (plus its peers' figures), indexed for fast matching."""

    ticker: str
    facts: dict[str, Fact] = field(default_factory=dict)
    _index: dict[str, tuple[list[float], list[Fact]]] | None = field(default=None, repr=False)
    _memo: dict[tuple[str, str], list[Fact]] = field(default_factory=dict, repr=False)

    def add(self, name: str, value: float | None, kind: FactKind) -> None:
        """Record a fact; ``None`` (not reported) is skipped. A name may be added once."""
        if value is None:
            return
        if name in self.facts:
            raise ValueError(f"fact {name!r} added twice for {self.ticker}")
        self.facts[name] = Fact(name, float(value), kind)
        self._index = None
        self._memo.clear()

    def freeze(self) -> None:
        """Build the matching index now (a later ``add`` still invalidates it)."""
        if self._index is None:
            self._index = self._build_index()

    def __contains__(self, name: object) -> bool:
        return name in self.facts

    def _build_index(self) -> dict[str, tuple[list[float], list[Fact]]]:
        # Per fact kind: values sorted for bisection (a figure kind may search several fact kinds).
        index: dict[str, tuple[list[float], list[Fact]]] = {}
        by_kind: dict[str, list[Fact]] = {}
        for fact in self.facts.values():
            by_kind.setdefault(fact.kind, []).append(fact)
        for kind, facts in by_kind.items():
            facts.sort(key=lambda f: f.value)
            index[kind] = ([f.value for f in facts], facts)
        return index

    def check(self, figure: Figure) -> list[Fact]:
        """Facts that ``figure`` matches within its rounding (empty: unsupported). Counts always pass.

        An unsigned figure may also match a fact's magnitude ("revenue fell 2.1%" for growth of -2.1%)."""
        # A figure's kind, value, rounding and sign all follow from how it is written: memoise on that.
        key = (figure.raw, figure.kind)
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        if figure.kind == "count":
            return [Fact("count", figure.value, "number")]
        signed = _explicitly_signed(figure)
        if self._index is None:
            self._index = self._build_index()
        found: list[Fact] = []
        for kind, factor in _COMPATIBLE.get(figure.kind, ()):
            entry = self._index.get(kind)
            if entry is None:
                continue
            values, facts = entry
            found.extend(_within(values, facts, figure.value / factor, figure, factor))
            if not found and not signed:
                found.extend(_within(values, facts, -figure.value / factor, figure, factor))
            if found:
                break
        self._memo[key] = found
        return found

    def unsupported(self, figures: list[Figure]) -> list[Figure]:
        """The figures that match no fact (``check`` for each, with the memo consulted inline)."""
        memo, check = self._memo, self.check
        missing = []
        for figure in figures:
            found = memo.get((figure.raw, figure.kind))
            if found is None:
                found = check(figure)
            if not found:
                missing.append(figure)
        return missing


def _explicitly_signed(figure: Figure) -> bool:
    return figure.raw.startswith(("+", "-", "\u2212", "(", "$(")) or figure.value < 0


def _within(values: list[float], facts: list[Fact], target: float, figure: Figure, factor: float) -> list[Fact]:
    # ``target`` is in the fact's unit; the figure's tolerance is converted to it with ``factor``.
    slack = figure.tolerance / factor * (1 + 1e-6) + 1e-9 * max(1.0, abs(target))
    lo = bisect.bisect_left(values, target - slack)
    hi = bisect.bisect_right(values, target + slack)
    return facts[lo:hi]


def date_ordinal(day: dt.date) -> float:
    """Dates are stored as their proleptic ordinal, as the figure parser reads '2024-12-31'."""
    return float(day.toordinal())


# How each numeric field of the engine's results is written in text. A field missing here is an error
# (tests run every embedded company), so a new engine output cannot slip through unclassified.
_FIELD_KINDS: dict[str, FactKind | None] = {
    **dict.fromkeys(
        [
            "after_tax_cost_of_debt",
            "buy_threshold",
            "sell_threshold",
            "comps_weight",
            "comps_weight_ev_ebitda",
            "comps_weight_ev_sales",
            "comps_weight_pe",
            "cost_of_equity",
            "credit_spread",
            "dcf_weight",
            "debt_weight",
            "equity_weight",
            "dividend_payout",
            "ebitda_growth",
            "ebitda_margin",
            "effective_tax_rate",
            "effective_weight",
            "eps_growth",
            "equity_risk_premium",
            "fallback_tax_rate",
            "fcf_conversion",
            "fcf_margin",
            "gross_margin",
            "implied_fcf_margin",
            "implied_initial_growth",
            "implied_terminal_growth",
            "initial_growth",
            "model_fcf_margin",
            "model_initial_growth",
            "max_cost_of_debt",
            "min_cost_of_debt",
            "max_fcf_margin",
            "min_fcf_margin",
            "max_initial_growth",
            "min_initial_growth",
            "max_tax_rate",
            "min_tax_rate",
            "net_margin",
            "operating_margin",
            "pre_tax_cost_of_debt",
            "revenue_cagr",
            "revenue_growth",
            "risk_free_rate",
            "roa",
            "roe",
            "roic",
            "sensitivity_growth_step",
            "sensitivity_wacc_step",
            "tax_rate",
            "terminal_growth",
            "terminal_growth_values",
            "terminal_value_share",
            "upside",
            "wacc",
            "wacc_values",
            "weight",
            "debt_to_equity",
            "initial_revenue_growth",
            # market-condition shifts (equitune.finance.conditions)
            "risk_free_shift",
            "equity_risk_premium_shift",
            "revenue_growth_shift",
            "fcf_margin_shift",
        ],
        "fraction",
    ),
    **dict.fromkeys(
        [
            "base_revenue",
            "cash",
            "company_metric",
            "debt_value",
            "enterprise_value",
            "equity_value",
            "final_year_ebitda",
            "free_cash_flow",
            "market_cap",
            "net_debt",
            "present_value",
            "pv_terminal_value",
            "revenue",
            "sum_pv_fcf",
            "terminal_value",
            "terminal_value_exit",
            "terminal_value_gordon",
            "total_debt",
            "ebitda",
            "net_income",
        ],
        "money",
    ),
    **dict.fromkeys(
        [
            "comps_value_per_share",
            "dcf_value_per_share",
            "implied_value_high",
            "implied_value_low",
            "implied_value_per_share",
            "price",
            "price_target",
            "value_per_share",
            "values",
            "eps",
        ],
        "per_share",
    ),
    **dict.fromkeys(
        [
            "company_multiple",
            "ev_ebitda",
            "ev_sales",
            "exit_multiple",
            "high",
            "implied_exit_multiple",
            "interest_coverage",
            "low",
            "median",
            "net_debt_to_ebitda",
            "pe",
        ],
        "multiple",
    ),
    **dict.fromkeys(["base_fiscal_year", "fiscal_year", "prior_fiscal_year"], "year"),
    "diluted_shares": "shares",
    "beta": "number",
    "raw_beta": "number",
    "default_beta": "number",
    "discount_factor": "number",
    "terminal_discount_factor": "number",
    # Counts and positions, not figures.
    **dict.fromkeys(
        [
            "base_column",
            "base_row",
            "fcf_margin_history_years",
            "growth_history_years",
            "min_peers",
            "peer_count",
            "projection_years",
            "revenue_cagr_years",
            "sensitivity_steps",
            "sub_industry_peer_count",
            "year",
        ],
        None,
    ),
}


# The industry summary (equitune.finance.industry): group totals, shares, gaps to and premiums over the peer
# median; rank positions are not figures (they are written in words).
_FIELD_KINDS.update(
    {
        **dict.fromkeys(["peer_revenue_total", "group_revenue_total"], "money"),
        **dict.fromkeys(
            [
                "revenue_share",
                "revenue_growth_gap",
                "gross_margin_gap",
                "operating_margin_gap",
                "ebitda_margin_gap",
                "net_margin_gap",
                "fcf_margin_gap",
                "roic_gap",
                "ev_ebitda_premium",
                "pe_premium",
                "ev_sales_premium",
            ],
            "fraction",
        ),
        "revenue_to_peer_median": "multiple",
        **dict.fromkeys(["position", "out_of"], None),
    }
)


def _walk(sheet: FactSheet, value: object, path: str, key: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _walk(sheet, v, f"{path}.{k}" if path else str(k), str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(sheet, v, f"{path}[{i}]", key)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if key not in _FIELD_KINDS:
            raise KeyError(f"engine field {path!r} has no fact kind; add {key!r} to _FIELD_KINDS")
        kind = _FIELD_KINDS[key]
        if kind is not None:
            sheet.add(path, float(value), kind)


def add_model(sheet: FactSheet, prefix: str, model: object) -> None:
    """Add every numeric field of a pydantic result (analysis, estimates, ...) under ``prefix``."""
    from pydantic import BaseModel

    if not isinstance(model, BaseModel):
        raise TypeError(f"expected a pydantic model, got {type(model).__name__}")
    _walk(sheet, model.model_dump(mode="python"), prefix, prefix)


_COMPANY_KINDS: dict[str, FactKind] = {
    "revenue": "money",
    "gross_profit": "money",
    "operating_income": "money",
    "depreciation_amortization": "money",
    "ebitda": "money",
    "interest_expense": "money",
    "pretax_income": "money",
    "income_tax_expense": "money",
    "net_income": "money",
    "eps_diluted": "per_share",
    "operating_cash_flow": "money",
    "capex": "money",
    "free_cash_flow": "money",
    "cash": "money",
    "total_debt": "money",
    "total_equity": "money",
    "total_assets": "money",
    "dividends_per_share": "per_share",
    "net_interest_income": "money",
    "provision_for_credit_losses": "money",
    "common_equity": "money",
    "tangible_common_equity": "money",
    "cet1_ratio": "fraction",
}


PEER_FIELDS = ("revenue", "ebitda", "net_income", "free_cash_flow")


def add_company(
    sheet: FactSheet,
    company: object,
    prefix: str = "company",
    fields: tuple[str, ...] | None = None,
    years: int | None = None,
) -> None:
    """Add a company's reported figures: market data, and each fiscal year's line items and label
    (only ``fields`` of the newest ``years`` years when given: peers carry few facts, so that fewer invented
    figures match a fact by coincidence)."""
    from equitune.market.models import Company

    if not isinstance(company, Company):
        raise TypeError(f"expected a Company, got {type(company).__name__}")
    sheet.add(f"{prefix}.price", company.price, "per_share")
    sheet.add(f"{prefix}.market_cap", company.market_cap, "money")
    sheet.add(f"{prefix}.diluted_shares", company.diluted_shares, "shares")
    sheet.add(f"{prefix}.beta", company.beta, "number")
    for day_name in ("price_date", "as_of"):
        day = getattr(company, day_name)
        if day is not None:
            sheet.add(f"{prefix}.{day_name}", date_ordinal(day), "date")
    for fy in company.financials[:years]:
        key = f"{prefix}.FY{fy.fiscal_year}"
        sheet.add(f"{key}.fiscal_year", fy.fiscal_year, "year")
        if fy.period_end is not None:
            sheet.add(f"{key}.period_end", date_ordinal(fy.period_end), "date")
        for name, kind in _COMPANY_KINDS.items():
            if fields is None or name in fields:
                sheet.add(f"{key}.{name}", getattr(fy, name), kind)


# The fundamental DCF, the excess-return and dividend-discount models, bank and insurer line items.
_FIELD_KINDS.update(
    {
        **dict.fromkeys(
            [
                "invested_capital",
                "nopat",
                "reinvestment",
                "book_value",
                "excess_return",
                "net_interest_income",
                "provision_for_credit_losses",
                "common_equity",
                "tangible_common_equity",
            ],
            "money",
        ),
        **dict.fromkeys(
            [
                "operating_margin",
                "target_operating_margin",
                "base_roic",
                "reinvestment_rate",
                "fundamental_growth",
                "historical_growth",
                "terminal_roic",
                "roe",
                "growth",
                "sustainable_growth",
                "payout_ratio",
                "cet1_ratio",
                "comps_weight_pb",
                "implied_roe",
                "implied_dividend_growth",
                "roe_spread",
                "nii_share",
                "provision_to_nii",
                "pretax_margin",
                "equity_to_assets",
                "nii_growth",
                "roe_gap",
                "pb_premium",
            ],
            "fraction",
        ),
        **dict.fromkeys(["justified_pb", "current_pb", "pb", "sales_to_capital"], "multiple"),
        **dict.fromkeys(
            [
                "book_value_per_share",
                "dividend",
                "pv_dividends",
                "dividend_present_value",
                "terminal_value_per_share",
                "pv_terminal_value_per_share",
            ],
            "per_share",
        ),
        **dict.fromkeys(["explicit_years", "high_growth_years"], None),
    }
)
