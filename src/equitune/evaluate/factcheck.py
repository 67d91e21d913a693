"""The numeric fact-check: every figure of a research report labelled against the company's data.

Every figure ``equitune.data.numbers.extract_figures`` finds (currency, percentages, multiples, numbers with
units, fiscal years, dates; bare small counts are skipped) gets one label:

* ``grounded``: matches a reported figure of the company or a peer (price, revenue, EPS, ...) within the
  rounding it was written to, or a figure the prompt itself gave; fiscal years and dates in the data (FY2024,
  FY2029E of the DCF projection, the price date) are grounded too.
* ``derived_correct``: matches an output of the finance engine (margins, growth, WACC, DCF value, target,
  upside, multiples, scenarios, estimates, sensitivity cells, ...).
* ``derived_wrong``: the words next to the figure name a derived quantity ("upside of 25%", "WACC of 9.1%",
  "price target $310", "operating margin 31%") and the figure contradicts every value the engine computed for
  that quantity (the company's, the peers', the scenarios' and the sensitivity grid's). In a market-condition
  context the base case's values count only where the text talks about the base case: under a header about the
  condition, or on a line that mentions the base case or compares two values ("from $151.87 to $170.68"); a
  valuation that states the base-case target as its target is wrong for the condition.
* ``unsupported``: no fact supports the figure as stated: it matches nothing, or the words name a reported
  quantity ("revenue of $20.0B") whose values in the data it contradicts.

The named quantity comes from ``QUANTITIES``, a keyword table: a figure is attributed to the keyword written
right before it ("WACC of 9.1%", "**Upside:** +12.0%", "| Gross margin | 41.9% |") when only linking words
(``LINK_WORDS``: of, is, was, at, to, ...) and markdown stand between them, or right after it ("the 8.8% WACC",
"the $85.32 share price") when only spaces do; a figure that opens a table cell is attributed to the cell's
column header, else its row label ("| Revenue | $391.0B | $383.3B |" binds both). The figure is checked in its
quantity's unit (a bare number as percentage points, a multiple or dollars). When the only keyword before it
(or its cell's header or label) names a quantity of another unit ("the cost of equity is around $93.7B", "ROIC:
$50.57", "a DCF value of -23.3%"), the figure is **misbound**: ``derived_wrong`` (or ``unsupported`` for a
reported quantity) with ``misbound`` set, whatever other fact it equals; keywords that also serve as verbs or
labels (``LOOSE_KEYWORDS``: "trades at 41.2x earnings", "grew to $391.0B") never misbind. A signed percentage
right by a level is read as its change ("revenue +2.0%", a "vs price" column as the upside) when it matches it.
A figure bound to a quantity the data holds no value of (a dividend yield: the engine computes none) is
unsupported unless the prompt gave it. Fiscal years, dates and basis points (shifts) bind to nothing. Anything
else is not attributed, checked by value alone and counted (``FactCheckResult.unattributed``).

On top of the labels, three internal-consistency checks compare the report with itself (each ``pass``,
``fail`` or ``skip`` with the numbers): stated upside = stated target / stated price - 1 within the rounding
of all three; the stated rating is the one the rating bands give for the stated upside; the stated WACC is
above the stated terminal growth. The stated value of a quantity is the one the text attributes to it most
often (the first on a tie). Per-report metrics: the hallucinated-number rate (unsupported / figures), the
derived-number error rate (derived_wrong / derived figures) and the key-fact coverage (share of the task's
key facts, ``KEY_FACTS``, that appear). ``agreement`` says whether the stated price, target, upside and rating
are the engine's for this context (a base-case target stated as the target of a market-condition report is a
real figure, but not this report's). Every result is plain data with a ``to_dict`` for JSON.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from equitune.data.facts import Fact, FactSheet
from equitune.data.numbers import Figure, extract_figures
from equitune.formatting import fmt_money, fmt_multiple, fmt_pct, fmt_price

if TYPE_CHECKING:
    from equitune.data.context import ExampleContext

Label = Literal["grounded", "derived_correct", "derived_wrong", "unsupported"]
# Calendar labels (FY2024, 2024-12-31): grounded when in the data, never the value of a quantity.
CALENDAR_KINDS = frozenset({"year", "date"})
LABELS: tuple[Label, ...] = ("grounded", "derived_correct", "derived_wrong", "unsupported")
Status = Literal["pass", "fail", "skip"]
Sign = Literal["any", "as_written", "negated"]


class RatingBands(Protocol):
    """The rating bands: Buy at or above ``buy_threshold`` upside, Sell below ``sell_threshold``
    (``equitune.finance.ValuationAssumptions`` is one)."""

    buy_threshold: float
    sell_threshold: float


# --------------------------------------------------------------------------------------- the keyword table

_CURRENCY = frozenset({"currency"})
_MONEY = frozenset({"currency", "number"})
_PERCENT = frozenset({"percent"})
_MULTIPLE = frozenset({"multiple"})
_NUMBER = frozenset({"number"})


@dataclass(frozen=True)
class Quantity:
    """A quantity a report can name: the words that name it, the figure kinds it is written as, and the engine
    fields that hold its values (``field`` or ``field@path-part``: the last part of a fact's name, with list
    indexes dropped, and optionally a part its name must contain)."""

    name: str
    label: str
    keywords: tuple[str, ...]
    kinds: frozenset[str]
    fields: tuple[str, ...]
    derived: bool = True
    sign: Sign = "any"


# Longer keywords win over shorter ones at the same place ("price target" over "price", "EV/EBITDA" over
# "EBITDA"); hyphens and spaces in keywords match either. ``derived=False`` marks figures the company reports.
QUANTITIES: tuple[Quantity, ...] = (
    # The headline: price, target, upside.
    Quantity(
        "price",
        "share price",
        ("share price", "current price", "stock price", "price", "trading at", "trades at", "closing price"),
        _CURRENCY,
        ("price",),
        derived=False,
    ),
    Quantity(
        "price_target",
        "price target",
        ("price target", "target price", "target", "price objective"),
        _CURRENCY,
        ("price_target",),
    ),
    Quantity(
        "upside",
        "upside to the price target",
        ("upside", "implied upside", "implied return", "expected return", "potential return", "return of"),
        _PERCENT,
        ("upside",),
        sign="as_written",
    ),
    Quantity(
        "downside",
        "downside to the price target",
        ("downside", "implied downside"),
        _PERCENT,
        ("upside",),
        sign="negated",
    ),
    Quantity(
        "rating_band",
        "rating band",
        ("buy threshold", "sell threshold", "at or above", "sell below", "buy above", "hold band", "band"),
        _PERCENT,
        ("buy_threshold", "sell_threshold"),
    ),
    # Cost of capital.
    Quantity(
        "wacc",
        "WACC",
        ("wacc", "discount rate", "weighted average cost of capital", "cost of capital"),
        _PERCENT,
        ("wacc", "wacc_values"),
    ),
    Quantity(
        "terminal_growth",
        "terminal growth",
        (
            "terminal growth",
            "terminal growth rate",
            "terminal rate",
            "perpetuity growth",
            "perpetual growth",
            "long-term growth",
            "growth in perpetuity",
        ),
        _PERCENT,
        ("terminal_growth", "terminal_growth_values", "implied_terminal_growth"),
    ),
    Quantity(
        "cost_of_equity",
        "cost of equity",
        ("cost of equity", "cost-of-equity"),
        _PERCENT,
        # Sector models (excess-return, dividend-discount) discount at the cost of equity: their scenarios and
        # sensitivity rows hold it in the 'wacc' fields.
        ("cost_of_equity", "wacc@.scenarios", "wacc_values@.excess_return.", "wacc_values@.dividend_discount."),
    ),
    Quantity(
        "cost_of_debt",
        "cost of debt",
        ("cost of debt", "after-tax cost of debt", "pre-tax cost of debt"),
        _PERCENT,
        ("after_tax_cost_of_debt", "pre_tax_cost_of_debt"),
    ),
    Quantity("risk_free_rate", "risk-free rate", ("risk-free rate", "risk-free"), _PERCENT, ("risk_free_rate",)),
    Quantity(
        "equity_risk_premium",
        "equity risk premium",
        ("equity risk premium", "erp"),
        _PERCENT,
        ("equity_risk_premium",),
    ),
    Quantity("beta", "beta", ("beta",), _NUMBER, ("beta", "default_beta")),
    Quantity(
        "tax_rate",
        "tax rate",
        ("tax rate", "effective tax rate"),
        _PERCENT,
        ("tax_rate", "effective_tax_rate", "fallback_tax_rate"),
    ),
    Quantity("debt_weight", "debt weight", ("debt weight", "weight of debt"), _PERCENT, ("debt_weight",)),
    # Values per share and the DCF bridge.
    Quantity(
        "dcf_value",
        "DCF value",
        (
            "dcf value",
            "dcf value per share",
            "dcf-implied value",
            "dcf",
            "intrinsic value",
            "discounted cash flow value",
            "dcf gives",
        ),
        _CURRENCY,
        ("dcf_value_per_share", "value_per_share@.dcf.", "values@.sensitivity."),
    ),
    Quantity(
        "sector_value",
        "sector-model value",
        (
            "excess-return value",
            "excess-return (justified p/b) value",
            "dividend-discount value",
            "dividend-discount model gives",
            "excess-return (justified p/b) model gives",
            "value per share",
        ),
        _CURRENCY,
        (
            "dcf_value_per_share",
            "value_per_share@.excess_return.",
            "value_per_share@.dividend_discount.",
            "value_per_share@.dcf.",
            "values@.sensitivity.",
            "value_per_share@.scenarios",
            "implied_value_per_share",
            "price_target",
        ),
    ),
    Quantity(
        "book_value_per_share",
        "book value per share",
        ("book value per share", "book value"),
        _CURRENCY,
        ("book_value_per_share",),
    ),
    Quantity(
        "pb",
        "P/B",
        ("p/b", "price to book", "price-to-book", "book"),
        _MULTIPLE,
        (
            "pb",
            "justified_pb",
            "current_pb",
            "median@.multiples",
            "low@.multiples",
            "high@.multiples",
            "company_multiple",
        ),
    ),
    Quantity("justified_pb", "justified P/B", ("justified p/b", "justified"), _MULTIPLE, ("justified_pb",)),
    Quantity(
        "dividend_growth",
        "dividend growth",
        ("dividend growth", "dividend growth of"),
        _PERCENT,
        (
            "initial_growth@.dividend_discount.",
            "initial_growth@.scenarios",
            "sustainable_growth",
            "historical_growth",
            "implied_dividend_growth",
            "terminal_growth",
        ),
    ),
    Quantity(
        "payout",
        "payout ratio",
        ("payout", "payout ratio", "dividend payout"),
        _PERCENT,
        ("payout_ratio", "dividend_payout"),
    ),
    Quantity(
        "net_interest_income",
        "net interest income",
        ("net interest income", "nii"),
        _MONEY,
        ("net_interest_income",),
        derived=False,
    ),
    Quantity(
        "provision",
        "provision for credit losses",
        ("provision for credit losses", "provisions", "provision", "credit costs"),
        _MONEY,
        ("provision_for_credit_losses",),
        derived=False,
    ),
    Quantity(
        "cet1", "CET1 ratio", ("cet1 ratio", "cet1", "common equity tier 1"), _PERCENT, ("cet1_ratio",), derived=False
    ),
    Quantity(
        "common_equity", "common equity", ("common equity",), _MONEY, ("common_equity", "book_value"), derived=False
    ),
    Quantity(
        "tangible_common_equity",
        "tangible common equity",
        ("tangible common equity",),
        _MONEY,
        ("tangible_common_equity",),
        derived=False,
    ),
    Quantity(
        "equity_to_assets",
        "equity / assets",
        ("equity / assets", "equity to assets", "equity is"),
        _PERCENT,
        ("equity_to_assets",),
    ),
    Quantity("pretax_margin", "pretax margin", ("pretax margin", "pre-tax margin"), _PERCENT, ("pretax_margin",)),
    Quantity(
        "comps_value",
        "comparables value",
        (
            "comparables",
            "comps",
            "comparables value",
            "comparables value per share",
            "comps value",
            "peer-implied value",
            "multiples-implied value",
            "implied value",
            "implied value per share",
        ),
        _CURRENCY,
        (
            "comps_value_per_share",
            "value_per_share@.comparables.",
            "implied_value_per_share",
            "implied_value_low",
            "implied_value_high",
        ),
    ),
    Quantity(
        "scenario_value",
        "scenario value",
        (
            "bull case",
            "bear case",
            "base case",
            "bull-case value",
            "bear-case value",
            "base-case value",
            "bull value",
            "bear value",
            "bull",
            "bear",
            "scenario value",
        ),
        _CURRENCY,
        (
            "value_per_share@.scenarios",
            "dcf_value_per_share@.scenarios",
            "comps_value_per_share@.scenarios",
            "price_target",
        ),
    ),
    Quantity("enterprise_value", "enterprise value", ("enterprise value",), _MONEY, ("enterprise_value",)),
    Quantity("equity_value", "equity value", ("equity value",), _MONEY, ("equity_value",)),
    Quantity(
        "terminal_value",
        "terminal value",
        ("terminal value", "pv of terminal value", "pv of the terminal value", "present value of the terminal value"),
        _MONEY,
        (
            "terminal_value",
            "terminal_value_exit",
            "terminal_value_gordon",
            "pv_terminal_value",
            "terminal_value_per_share",
            "pv_terminal_value_per_share",
        ),
    ),
    Quantity(
        "pv_dividends",
        "present value of the explicit-period dividends",
        ("pv of explicit-period dividends", "explicit-period dividends"),
        _CURRENCY,
        ("pv_dividends",),
    ),
    Quantity(
        "projected_dividend",
        "projected dividend",
        ("dividend in the final explicit year", "final explicit-year dividend"),
        _CURRENCY,
        ("dividend",),
    ),
    Quantity(
        "pv_fcf",
        "present value of the forecast cash flows",
        (
            "pv of fcf",
            "pv of free cash flow",
            "pv of projected free cash flow",
            "present value of projected free cash flow",
            "present value of the explicit forecast",
        ),
        _MONEY,
        ("sum_pv_fcf", "present_value"),
    ),
    # Ratios.
    Quantity("gross_margin", "gross margin", ("gross margin",), _PERCENT, ("gross_margin",)),
    Quantity("operating_margin", "operating margin", ("operating margin",), _PERCENT, ("operating_margin",)),
    Quantity("ebitda_margin", "EBITDA margin", ("ebitda margin",), _PERCENT, ("ebitda_margin",)),
    Quantity("net_margin", "net margin", ("net margin", "net profit margin"), _PERCENT, ("net_margin",)),
    Quantity(
        "fcf_margin",
        "FCF margin",
        ("fcf margin", "free cash flow margin"),
        _PERCENT,
        ("fcf_margin", "min_fcf_margin", "max_fcf_margin", "implied_fcf_margin", "model_fcf_margin"),
    ),
    Quantity("roic", "ROIC", ("roic", "return on invested capital"), _PERCENT, ("roic",)),
    Quantity(
        "roe",
        "ROE",
        ("roe", "return on equity", "sustained roe"),
        _PERCENT,
        ("roe", "implied_roe", "roe_spread", "roe_gap"),
    ),
    Quantity("roa", "ROA", ("roa", "return on assets"), _PERCENT, ("roa",)),
    Quantity(
        "revenue_growth",
        "revenue growth",
        (
            "revenue growth",
            "sales growth",
            "top-line growth",
            "first-year growth",
            "first-year revenue growth",
            "year-1 revenue growth",
            "year-one revenue growth",
            "revenue cagr",
            "cagr",
        ),
        _PERCENT,
        (
            "revenue_growth",
            "initial_growth",
            "initial_revenue_growth",
            "revenue_cagr",
            "implied_initial_growth",
            "model_initial_growth",
        ),
    ),
    Quantity(
        "growth",
        "growth",
        ("growth", "grew", "grows"),
        _PERCENT,
        (
            "revenue_growth",
            "initial_growth",
            "initial_revenue_growth",
            "revenue_cagr",
            "eps_growth",
            "ebitda_growth",
            "terminal_growth",
            "implied_initial_growth",
            "model_initial_growth",
            "implied_dividend_growth",
            "nii_growth",
            "growth",
            "sustainable_growth",
            "historical_growth",
            "terminal_growth_values",
        ),
    ),
    Quantity("eps_growth", "EPS growth", ("eps growth", "earnings growth"), _PERCENT, ("eps_growth",)),
    Quantity("ebitda_growth", "EBITDA growth", ("ebitda growth",), _PERCENT, ("ebitda_growth",)),
    Quantity("fcf_conversion", "FCF conversion", ("fcf conversion", "cash conversion"), _PERCENT, ("fcf_conversion",)),
    Quantity(
        "net_debt_to_ebitda",
        "net debt/EBITDA",
        ("net debt/ebitda", "net debt to ebitda", "leverage"),
        _MULTIPLE,
        ("net_debt_to_ebitda",),
    ),
    Quantity("interest_coverage", "interest coverage", ("interest coverage",), _MULTIPLE, ("interest_coverage",)),
    Quantity(
        "ev_ebitda",
        "EV/EBITDA",
        ("ev/ebitda", "ev to ebitda", "enterprise value to ebitda", "exit multiple"),
        _MULTIPLE,
        (
            "ev_ebitda",
            "exit_multiple",
            "implied_exit_multiple",
            "median@.multiples",
            "low@.multiples",
            "high@.multiples",
            "company_multiple",
        ),
    ),
    Quantity(
        "pe",
        "P/E",
        ("p/e", "pe ratio", "price/earnings", "price-to-earnings", "earnings multiple"),
        _MULTIPLE,
        ("pe", "median@.multiples", "low@.multiples", "high@.multiples", "company_multiple"),
    ),
    Quantity(
        "ev_sales",
        "EV/Sales",
        ("ev/sales", "ev/revenue", "ev to sales"),
        _MULTIPLE,
        ("ev_sales", "median@.multiples", "low@.multiples", "high@.multiples", "company_multiple"),
    ),
    Quantity("net_debt", "net debt", ("net debt",), _MONEY, ("net_debt",)),
    # Reported figures.
    Quantity(
        "revenue",
        "revenue",
        ("revenue", "revenues", "sales", "net sales", "total revenue", "top line"),
        _MONEY,
        ("revenue", "base_revenue", "peer_revenue_total", "group_revenue_total"),
        derived=False,
    ),
    Quantity("ebitda", "EBITDA", ("ebitda",), _MONEY, ("ebitda", "final_year_ebitda"), derived=False),
    Quantity("net_income", "net income", ("net income", "net earnings"), _MONEY, ("net_income",), derived=False),
    Quantity(
        "operating_income",
        "operating income",
        ("operating income", "operating profit", "ebit"),
        _MONEY,
        ("operating_income",),
        derived=False,
    ),
    Quantity("gross_profit", "gross profit", ("gross profit",), _MONEY, ("gross_profit",), derived=False),
    Quantity(
        "eps", "EPS", ("eps", "diluted eps", "earnings per share"), _CURRENCY, ("eps", "eps_diluted"), derived=False
    ),
    Quantity(
        "free_cash_flow",
        "free cash flow",
        ("free cash flow", "fcf"),
        _MONEY,
        ("free_cash_flow",),
        derived=False,
    ),
    Quantity(
        "operating_cash_flow",
        "operating cash flow",
        ("operating cash flow", "cash from operations"),
        _MONEY,
        ("operating_cash_flow",),
        derived=False,
    ),
    Quantity(
        "capex",
        "capex",
        ("capex", "capital expenditure", "capital expenditures"),
        _MONEY,
        ("capex",),
        derived=False,
    ),
    Quantity("cash", "cash", ("cash", "cash and equivalents"), _MONEY, ("cash",), derived=False),
    Quantity(
        "total_debt", "total debt", ("total debt", "gross debt"), _MONEY, ("total_debt", "debt_value"), derived=False
    ),
    Quantity(
        "total_equity",
        "shareholders' equity",
        ("shareholders' equity", "shareholders equity", "total equity", "book equity"),
        _MONEY,
        ("total_equity",),
        derived=False,
    ),
    Quantity(
        "market_cap",
        "market cap",
        ("market cap", "market capitalisation", "market capitalization"),
        _MONEY,
        ("market_cap",),
        derived=False,
    ),
    Quantity(
        "dividend",
        "dividend per share",
        ("dividend", "dividends", "dividend per share", "dividends per share", "dividends/share"),
        _CURRENCY,
        ("dividends_per_share",),
        derived=False,
    ),
    # The engine computes no dividend yield: a yield the prompt did not give is unsupported, whatever its value.
    Quantity(
        "dividend_yield",
        "dividend yield",
        ("dividend yield",),
        _PERCENT,
        (),
    ),
    Quantity(
        "diluted_shares",
        "diluted shares",
        ("diluted shares", "shares outstanding", "share count"),
        _NUMBER,
        ("diluted_shares",),
        derived=False,
    ),
)
QUANTITY_BY_NAME: dict[str, Quantity] = {q.name: q for q in QUANTITIES}

# Words that may stand between a keyword and the figure it names ("WACC of 9.1%", "upside is 25%").
LINK_WORDS = frozenset(
    {
        "of", "is", "was", "were", "at", "to", "stands", "stood", "sits", "sat", "came", "comes", "in", "reached",
        "the", "a", "an", "our", "its", "their", "about", "approximately", "around", "roughly", "nearly", "be",
        "would", "will", "equal", "equals", "per", "share", "currently", "now", "just", "only", "from", "by",
        "estimated", "implied", "reported", "stated", "set", "value", "rate",
    }
)  # fmt: skip
# Keywords that also serve as verbs or labels ("trades at 41.2x earnings", "grew to $391.0B", "Buy at or above
# $177.27", "bear case -35.3%", "a DCF at 9.4%"): a figure in another unit after them is not their quantity's,
# so it is left unattributed rather than called misbound.
LOOSE_KEYWORDS = frozenset(
    {
        "trading at", "trades at", "target", "growth", "grew", "grows", "return of", "at or above", "sell below",
        "buy above", "band", "book", "justified", "leverage", "equity is", "credit costs", "provision", "provisions",
        "dividend", "dividends", "bull case", "bear case", "base case", "comparables", "comps", "dcf", "cash",
    }
)  # fmt: skip
_GAP_CHARS = " \t*_:|=~,\u2248"
_GAP_TO_SPACE = str.maketrans(_GAP_CHARS, " " * len(_GAP_CHARS))
_MAX_GAP = 40
_AFTER_GAP = re.compile(r"[ \t*]{0,3}")
_PAREN_GAP = re.compile(r"\**[ \t]*\([ \t]*")


def normalise_keyword(keyword: str) -> str:
    """Lower case, with each run of spaces and hyphens as ``\\x00`` ("Risk-free rate" -> "risk\\x00free\\x00rate")."""
    return re.sub(r"[\s\-]+", "\x00", keyword.strip().lower())


def trie_pattern(words: list[str]) -> str:
    """A regex matching any of ``words`` (normalised with ``normalise_keyword``: ``\\x00`` stands for a run of
    spaces or hyphens), factored as a trie so that matching costs about one branch per character rather than one
    per word; longer words win at the same place."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        # Branches start with different characters (spaces and hyphens are normalised away), so their order
        # does not matter; a word that ends here makes the rest optional, and the longer match is tried first.
        branches = []
        for char in sorted(c for c in node if c):
            head = r"[\s\-]+" if char == "\x00" else re.escape(char)
            branches.append(head + emit(node[char]))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


_KEYWORD_QUANTITY: dict[str, Quantity] = {}
for _q in QUANTITIES:
    for _k in _q.keywords:
        if normalise_keyword(_k) in _KEYWORD_QUANTITY and _KEYWORD_QUANTITY[normalise_keyword(_k)] is not _q:
            raise ValueError(f"keyword {_k!r} names two quantities")
        _KEYWORD_QUANTITY[normalise_keyword(_k)] = _q
_LOOSE = frozenset(normalise_keyword(k) for k in LOOSE_KEYWORDS)
_TRIE = trie_pattern(sorted(_KEYWORD_QUANTITY))
_FIRST = re.escape("".join(sorted({k[0] for k in _KEYWORD_QUANTITY})))
# Matched on the lower-cased text (twice as fast as IGNORECASE); the leading character class lets the regex
# engine skip to candidate positions quickly, as in equitune.data.numbers.
_KEYWORDS = re.compile(f"(?=[{_FIRST}])(?<![a-z0-9])" + _TRIE + r"(?![a-z0-9])")
_KEYWORDS_ANY_CASE = re.compile(r"(?<![A-Za-z0-9])" + _TRIE + r"(?![A-Za-z0-9])", re.IGNORECASE)


class _Mention(NamedTuple):
    start: int
    end: int
    quantity: Quantity
    keyword: str


_SPELLINGS: dict[str, Quantity | None] = {}  # keyword as written -> quantity


def _mentions(text: str) -> list[_Mention]:
    """Every keyword of ``QUANTITIES`` in ``text``, in order."""
    lower = text.lower()
    # Lower-casing keeps positions except for a few characters (e.g. dotted capital I); then match any case.
    matches = _KEYWORDS.finditer(lower) if len(lower) == len(text) else _KEYWORDS_ANY_CASE.finditer(text)
    found = []
    spellings = _SPELLINGS
    for match in matches:
        spelled = match.group(0).lower()
        quantity = spellings.get(spelled)
        if quantity is None:
            if len(spellings) >= 10_000:
                spellings.clear()
            quantity = spellings[spelled] = _KEYWORD_QUANTITY.get(normalise_keyword(spelled))
        if quantity is not None:
            start, end = match.span()
            found.append(_Mention(start, end, quantity, text[start:end]))
    return found


@lru_cache(maxsize=65536)
def _links_only(gap: str) -> bool:
    """Whether only linking words, spaces and markdown stand in ``gap`` (memoised: the same gaps recur)."""
    if len(gap) > _MAX_GAP or "\n" in gap:
        return False
    return all(word in LINK_WORDS for word in gap.translate(_GAP_TO_SPACE).lower().split())


# ------------------------------------------------------------------------------------------- fact index

_FACTORS = {"money": 1e6, "shares": 1e6}
# Which fact kinds a figure kind may be compared with (the factor from the fact's unit is in ``_FACTORS``).
_FIGURE_FACT_KINDS: dict[str, tuple[str, ...]] = {
    "currency": ("money", "per_share"),
    "percent": ("fraction",),
    "bp": ("fraction",),
    "multiple": ("multiple",),
    "number": ("number", "shares", "money", "per_share", "multiple"),
    "year": ("year",),
    "date": ("date",),
}
_INDEX = re.compile(r"\[\d+\]")


def is_reported(fact_name: str) -> bool:
    """Whether a fact is a figure the company (or a peer) reports, as opposed to a finance-engine output."""
    return fact_name.startswith("company.") or (fact_name.startswith("peer.") and ".ratios." not in fact_name)


@dataclass
class _SheetIndex:
    """A fact sheet's facts per quantity, each as (value in figure units, fact, whether a base-case fact of a
    condition context), and the labels already worked out for a figure as written."""

    size: int
    by_quantity: dict[str, list[Fact]]
    entries: dict[str, list[tuple[float, Fact, bool]]]
    latest_year: int | None = None
    named: dict[tuple[str, str, str, float, bool], tuple[Label, tuple[str, ...]]] = field(default_factory=dict)
    general: dict[tuple[str, str], tuple[Label, tuple[str, ...]] | None] = field(default_factory=dict)


# Indexes of the sheets seen last (a sheet is kept alive by its entry; the oldest entries go first).
_SHEET_INDEXES: dict[int, tuple[FactSheet, _SheetIndex]] = {}
_MAX_SHEET_INDEXES = 1024
_FIELD_SPECS: dict[str, list[tuple[Quantity, str | None]]] = {}
for _q in QUANTITIES:
    for _spec in _q.fields:
        _field, _, _part = _spec.partition("@")
        _FIELD_SPECS.setdefault(_field, []).append((_q, _part or None))


_QUANTITIES_OF_NAME: dict[str, tuple[str, ...]] = {}  # fact name -> quantities it holds values of


def _quantities_of(name: str) -> tuple[str, ...]:
    found = _QUANTITIES_OF_NAME.get(name)
    if found is None:
        last = name.rsplit(".", 1)[-1]
        plain = _INDEX.sub("", name)
        specs = _FIELD_SPECS.get(_INDEX.sub("", last), ())
        found = tuple(q.name for q, part in specs if part is None or part in plain)
        if len(_QUANTITIES_OF_NAME) >= 200_000:
            _QUANTITIES_OF_NAME.clear()
        _QUANTITIES_OF_NAME[name] = found
    return found


def _index(sheet: FactSheet) -> _SheetIndex:
    """Facts per quantity, built once per fact sheet (rebuilt if facts were added since)."""
    cached = _SHEET_INDEXES.get(id(sheet))
    if cached is not None and cached[0] is sheet and cached[1].size == len(sheet.facts):
        return cached[1]
    _SHEET_INDEXES.pop(id(sheet), None)
    by_quantity: dict[str, list[Fact]] = {}
    entries: dict[str, list[tuple[float, Fact, bool]]] = {}
    quantities_of = _QUANTITIES_OF_NAME.get
    year = None
    for name, fact in sheet.facts.items():
        quantities = quantities_of(name)
        if quantities is None:
            quantities = _quantities_of(name)
        if quantities:
            entry = (fact.value * _FACTORS.get(fact.kind, 1.0), fact, name.startswith("base."))
            for quantity in quantities:
                if quantity in by_quantity:
                    by_quantity[quantity].append(fact)
                    entries[quantity].append(entry)
                else:
                    by_quantity[quantity] = [fact]
                    entries[quantity] = [entry]
        if fact.kind == "year" and name.startswith("company.FY") and (year is None or fact.value > year):
            year = fact.value
    index = _SheetIndex(len(sheet.facts), by_quantity, entries, None if year is None else int(year))
    _SHEET_INDEXES[id(sheet)] = (sheet, index)
    while len(_SHEET_INDEXES) > _MAX_SHEET_INDEXES:  # least recently built first
        _SHEET_INDEXES.pop(next(iter(_SHEET_INDEXES)))
    return index


def _close(value: float, tolerance: float, truth: float) -> bool:
    """Whether ``truth`` rounds to ``value`` written with half-unit ``tolerance``."""
    return abs(value - truth) <= tolerance * (1 + 1e-6) + 1e-9 * max(1.0, abs(truth))


def _within(index: _SheetIndex, quantity: str, figure: Figure, value: float, base: bool = False) -> list[Fact]:
    """Facts of ``quantity`` equal to ``value`` (in the figure's units) within the figure's rounding (the
    base-case facts of a condition context when ``base``). A quantity holds a few dozen facts at most, so a
    scan beats building sorted indexes per sheet."""
    kinds = _FIGURE_FACT_KINDS.get(figure.kind, ())
    slack = figure.tolerance * (1 + 1e-6) + 1e-9 * max(1.0, abs(value))
    low, high = value - slack, value + slack
    return [
        fact
        for v, fact, is_base in index.entries.get(quantity, ())
        if low <= v <= high and is_base == base and fact.kind in kinds
    ]


def _matches(figure: Figure, value: float, fact: Fact) -> bool:
    """Whether ``value`` (the figure's, possibly negated) equals ``fact`` within the figure's rounding."""
    if fact.kind not in _FIGURE_FACT_KINDS.get(figure.kind, ()):
        return False
    target = fact.value * _FACTORS.get(fact.kind, 1.0)
    return abs(value - target) <= figure.tolerance * (1 + 1e-6) + 1e-9 * max(1.0, abs(target))


def write_fact(fact: Fact, like: Figure | None = None) -> str:
    """A fact written the way equitune writes figures (signed when ``like`` was written with a sign)."""
    signed = like is not None and like.raw.lstrip("*").startswith(("+", "-", "\u2212"))
    if fact.kind == "money":
        return fmt_money(fact.value)
    if fact.kind == "per_share":
        return fmt_price(fact.value)
    if fact.kind == "fraction":
        return fmt_pct(fact.value, signed=signed)
    if fact.kind == "multiple":
        return fmt_multiple(fact.value)
    if fact.kind == "shares":
        return f"{fact.value:,.1f}M"
    if fact.kind in ("year", "date"):
        return str(int(fact.value)) if fact.kind == "year" else str(fact.value)
    return f"{fact.value:.2f}"


def _priority(fact: Fact) -> tuple[int, str]:
    for rank, prefix in enumerate(("analysis.target.", "analysis.", "company.", "estimates.", "base.", "industry.")):
        if fact.name.startswith(prefix):
            return rank, fact.name
    return 9, fact.name


# ---------------------------------------------------------------------------------------------- results


class FigureCheck(NamedTuple):
    """One figure of the text, its label, the quantity the words name (if any), the facts it matches (first
    few) and, when it contradicts the data, the values the data gives for that quantity."""

    raw: str
    kind: str
    value: float
    start: int
    end: int
    label: Label
    quantity: str | None = None
    keyword: str | None = None
    facts: tuple[str, ...] = ()
    expected: tuple[str, ...] = ()
    reason: str = ""
    misbound: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "raw": self.raw,
            "kind": self.kind,
            "value": self.value,
            "start": self.start,
            "end": self.end,
            "label": self.label,
            "quantity": self.quantity,
            "keyword": self.keyword,
            "facts": list(self.facts),
            "expected": list(self.expected),
            "reason": self.reason,
            "misbound": self.misbound,
        }


@dataclass(frozen=True)
class ConsistencyCheck:
    """One internal-consistency check: pass, fail or skip (nothing stated to check), with the numbers."""

    name: str
    status: Status
    detail: str
    values: dict[str, float | str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "values": dict(self.values)}


@dataclass(frozen=True)
class KeyFact:
    """One key fact of the task: whether the text states it, and its value as the data gives it."""

    name: str
    covered: bool
    expected: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "covered": self.covered, "expected": self.expected}


@dataclass
class FactCheckResult:
    """Every figure labelled, the consistency checks, key-fact coverage, and what the text states for the
    headline quantities next to the engine's values."""

    figures: list[FigureCheck]
    consistency: list[ConsistencyCheck]
    key_facts: list[KeyFact]
    stated: dict[str, str | None]
    engine: dict[str, float | str | None]
    stated_ratings: list[str] = field(default_factory=list)
    agreement: dict[str, bool | None] = field(default_factory=dict)

    def count(self, label: Label) -> int:
        return self.counts[label]

    @cached_property
    def counts(self) -> dict[str, int]:
        """Figures per label (every label present, zero or not)."""
        found = Counter(f.label for f in self.figures)
        return {label: found.get(label, 0) for label in LABELS}

    @property
    def supported(self) -> int:
        """Grounded and derived-correct figures."""
        counts = self.counts
        return counts["grounded"] + counts["derived_correct"]

    @property
    def derived(self) -> int:
        """Figures that state an engine output, right or wrong."""
        counts = self.counts
        return counts["derived_correct"] + counts["derived_wrong"]

    @property
    def hallucination_rate(self) -> float | None:
        """Unsupported figures / all figures (None without figures)."""
        return self.count("unsupported") / len(self.figures) if self.figures else None

    @property
    def derived_error_rate(self) -> float | None:
        """Derived-wrong figures / derived figures (None without derived figures)."""
        derived = self.derived
        return self.count("derived_wrong") / derived if derived else None

    @property
    def misbound(self) -> int:
        """Figures stated for a quantity in a unit it never has ("a cost of equity of $93.7B", "ROIC: $50.57")."""
        return sum(1 for f in self.figures if f.misbound)

    @property
    def unattributed(self) -> int:
        """Figures (other than fiscal years and dates) bound to no quantity: checked by value alone."""
        return sum(1 for f in self.figures if f.quantity is None and f.kind not in CALENDAR_KINDS)

    @property
    def key_fact_coverage(self) -> float | None:
        """Share of the task's key facts the text states (None when the task has none that apply)."""
        return sum(k.covered for k in self.key_facts) / len(self.key_facts) if self.key_facts else None

    def failed_consistency(self) -> list[ConsistencyCheck]:
        return [c for c in self.consistency if c.status == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "figures": len(self.figures),
            "counts": self.counts,
            "hallucination_rate": self.hallucination_rate,
            "derived_error_rate": self.derived_error_rate,
            "key_fact_coverage": self.key_fact_coverage,
            "misbound": self.misbound,
            "unattributed": self.unattributed,
            "stated": dict(self.stated),
            "stated_ratings": list(self.stated_ratings),
            "engine": dict(self.engine),
            "agreement": dict(self.agreement),
            "consistency": [c.to_dict() for c in self.consistency],
            "key_facts": [k.to_dict() for k in self.key_facts],
            "checks": [f.to_dict() for f in self.figures],
        }


# ------------------------------------------------------------------------------------------------ ratings

_RATING_WORDS = {
    "buy": "Buy",
    "hold": "Hold",
    "sell": "Sell",
    "outperform": "Buy",
    "overweight": "Buy",
    "neutral": "Hold",
    "underperform": "Sell",
    "underweight": "Sell",
}
_RATING = re.compile(
    r"(?=[BHSONU])(?<![A-Za-z])(BUY|HOLD|SELL|Buy|Hold|Sell|Outperform|Overweight|Neutral|Underperform|Underweight|"
    r"OUTPERFORM|OVERWEIGHT|NEUTRAL|UNDERPERFORM|UNDERWEIGHT)(?![A-Za-z])"
)
# A title-case rating word counts when it is the rating ("Rating: Buy", "we rate it a Buy", "**Hold**",
# "a Sell rating"), not a band ("Buy threshold", "Sell below 0%") or a verb.
_RATING_BEFORE = re.compile(r"(?i:rating|rated|rate|recommendation|call)\W{0,4}(?:\w+\s){0,3}\W{0,3}$")
_RATING_AFTER = re.compile(r"\**\s+(?i:rating)\b")
_NOT_RATING_AFTER = re.compile(r"\**\s*(?i:threshold|band|at or above|above|below|>|<|\u2265|if|when|zone)")
# The base case's rating in a condition note ("base case SELL", "against SELL in the base case", "from HOLD to").
_BASE_BEFORE = re.compile(r"(?i:base[\s-]case:?\s*(?:rating\s*)?|against\s+|from\s+)\**$")
_BASE_AFTER = re.compile(r"\**\s+(?i:in the base case|to\b)")


def stated_ratings(text: str) -> list[str]:
    """Every Buy / Hold / Sell the text states as its rating, in order (synonyms such as Outperform mapped)."""
    found = []
    for match in _RATING.finditer(text):
        word, start, end = match.group(1), match.start(), match.end()
        before, after = text[max(0, start - 40) : start], text[end : end + 24]
        if _BASE_BEFORE.search(before) or _BASE_AFTER.match(after) or _NOT_RATING_AFTER.match(after):
            continue
        if not word.isupper():
            bold = before.endswith("**") and after.startswith("**")
            if not (bold or _RATING_BEFORE.search(before) or _RATING_AFTER.match(after)):
                continue
        found.append(_RATING_WORDS[word.lower()])
    return found


def rating_for_upside(upside: float, bands: RatingBands) -> str:
    """Buy / Hold / Sell for ``upside`` under ``bands`` (as ``equitune.finance.rating_for``)."""
    if upside >= bands.buy_threshold:
        return "Buy"
    if upside < bands.sell_threshold:
        return "Sell"
    return "Hold"


# ------------------------------------------------------------------------------------------------ key facts

# The key facts of each task family: what a complete report of that kind states. Names resolve to facts of the
# sheet (``{fy}`` = the latest fiscal year); a key fact the data lacks (no DCF, no target) does not count.
KEY_FACT_SOURCES: dict[str, str] = {
    "price": "company.price",
    "price_target": "analysis.target.price_target",
    "upside": "analysis.target.upside",
    "rating": "",
    "revenue": "company.FY{fy}.revenue",
    "revenue_growth": "analysis.ratios.revenue_growth",
    "gross_margin": "analysis.ratios.gross_margin",
    "operating_margin": "analysis.ratios.operating_margin",
    "ebitda_margin": "analysis.ratios.ebitda_margin",
    "net_margin": "analysis.ratios.net_margin",
    "fcf_margin": "analysis.ratios.fcf_margin",
    "roic": "analysis.ratios.roic",
    "roe": "analysis.ratios.roe",
    "net_debt": "analysis.ratios.net_debt",
    "net_debt_to_ebitda": "analysis.ratios.net_debt_to_ebitda",
    "eps": "company.FY{fy}.eps_diluted",
    "wacc": "analysis.wacc.wacc",
    "cost_of_equity": "analysis.wacc.cost_of_equity",
    "terminal_growth": "analysis.dcf.inputs.terminal_growth",
    "dcf_value": "analysis.dcf.value_per_share",
    "comps_value": "analysis.comparables.value_per_share",
    "bear_value": "analysis.scenarios[0].value_per_share",
    "bull_value": "analysis.scenarios[2].value_per_share",
    "ev_ebitda": "industry.company.ev_ebitda",
    "pe": "industry.company.pe",
    "peer_median_ev_ebitda": "industry.peer_median.ev_ebitda",
    "revenue_share": "industry.revenue_share",
}
KEY_FACTS: dict[str, tuple[str, ...]] = {
    "executive_summary": (
        "price",
        "price_target",
        "upside",
        "rating",
        "revenue",
        "revenue_growth",
        "ebitda_margin",
        "eps",
        "dcf_value",
        "comps_value",
    ),
    "financial_analysis": (
        "revenue",
        "revenue_growth",
        "gross_margin",
        "operating_margin",
        "net_margin",
        "fcf_margin",
        "roic",
        "roe",
        "net_debt",
        "wacc",
    ),
    "valuation": (
        "price",
        "price_target",
        "upside",
        "rating",
        "wacc",
        "cost_of_equity",
        "terminal_growth",
        "dcf_value",
        "comps_value",
    ),
    "investment_thesis": ("price", "price_target", "upside", "rating", "bear_value", "bull_value", "wacc"),
    "risk_assessment": ("price", "price_target", "upside", "rating", "bear_value", "operating_margin", "wacc"),
    "industry_analysis": (
        "revenue",
        "revenue_growth",
        "operating_margin",
        "ebitda_margin",
        "roic",
        "ev_ebitda",
        "peer_median_ev_ebitda",
        "revenue_share",
    ),
}


def latest_fiscal_year(sheet: FactSheet) -> int | None:
    """The newest fiscal year of the company's reported figures."""
    years = [
        f.value for name, f in sheet.facts.items() if name.startswith("company.FY") and name.endswith(".fiscal_year")
    ]
    return int(max(years)) if years else None


# ------------------------------------------------------------------------------------------------ checking


class _Found(NamedTuple):
    figure: Figure
    check: FigureCheck
    value: float  # the value the text states for the quantity (negated for "downside")


def fact_check(
    text: str,
    sheet_or_context: FactSheet | ExampleContext,
    *,
    price: float | None = None,
    target: float | None = None,
    rating: str | None = None,
    bands: RatingBands | None = None,
    family: str | None = None,
    prompt: str = "",
) -> FactCheckResult:
    """Label every figure of ``text`` against the facts (see the module docstring) and run the consistency
    checks. ``sheet_or_context`` is an ``ExampleContext`` (its facts, price, target, rating and rating bands
    are used) or a bare ``FactSheet``. ``price``, ``target`` and ``rating`` override the engine's values,
    ``bands`` the rating bands (default: the context's assumptions, else ``ValuationAssumptions()``);
    ``family`` picks the key facts; figures the ``prompt`` gave count as grounded."""
    sheet, context = _unpack(sheet_or_context)
    if bands is None:
        if context is not None:
            bands = context.analysis.assumptions
        else:
            from equitune.finance.assumptions import ValuationAssumptions

            bands = ValuationAssumptions()
    engine = _engine(sheet, context, price, target, rating)
    figures = [f for f in extract_figures(text) if f.kind != "count"]
    found = _label(text, figures, sheet, prompt)
    ratings = stated_ratings(text)
    stated: dict[str, _Found | None] = {}
    fallback = {
        "price": "company.price",
        "price_target": "analysis.target.price_target",
        "upside": "analysis.target.upside",
    }
    for name in ("price", "price_target", "upside", "wacc", "terminal_growth"):
        stated[name] = _stated(found, name, text, stated.get("price_target"))
        if stated[name] is None and name in fallback:
            # Not named by a keyword: the figure recognised by value, if any.
            stated[name] = next((f for f in found if fallback[name] in f.check.facts), None)
    tally = Counter(ratings)
    rating_stated = next((r for r in ratings if tally[r] == max(tally.values())), None)
    consistency = [
        _upside_check(stated["price"], stated["price_target"], stated["upside"]),
        _rating_check(rating_stated, stated["upside"], bands),
        _wacc_check(stated["wacc"], stated["terminal_growth"]),
    ]
    key_facts = _key_facts(sheet, family, found, ratings, engine.get("rating"))
    agreement: dict[str, bool | None] = {}
    for name in ("price", "price_target", "upside"):
        said, truth = stated[name], engine.get(name)
        if said is None or not isinstance(truth, float):
            agreement[name] = None
        else:
            agreement[name] = _close(said.value, said.figure.tolerance, truth)
    truth_rating = engine.get("rating")
    agreement["rating"] = None if rating_stated is None or truth_rating is None else rating_stated == truth_rating
    return FactCheckResult(
        figures=[f.check for f in found],
        consistency=consistency,
        key_facts=key_facts,
        stated={
            **{name: (f.check.raw if f is not None else None) for name, f in stated.items()},
            "rating": rating_stated,
        },
        engine=engine,
        stated_ratings=ratings,
        agreement=agreement,
    )


def _unpack(source: FactSheet | ExampleContext) -> tuple[FactSheet, ExampleContext | None]:
    if isinstance(source, FactSheet):
        return source, None
    facts = getattr(source, "facts", None)
    if not isinstance(facts, FactSheet):
        raise TypeError(f"expected a FactSheet or an ExampleContext, got {type(source).__name__}")
    return facts, source


def _engine(
    sheet: FactSheet, context: ExampleContext | None, price: float | None, target: float | None, rating: str | None
) -> dict[str, float | str | None]:
    def fact(name: str) -> float | None:
        found = sheet.facts.get(name)
        return found.value if found is not None else None

    if context is not None:
        t = context.analysis.target
        price = price if price is not None else t.price
        target = target if target is not None else t.price_target
        rating = rating if rating is not None else t.rating
    price = price if price is not None else fact("company.price")
    target = target if target is not None else fact("analysis.target.price_target")
    upside = target / price - 1 if target is not None and price else None
    return {"price": price, "price_target": target, "upside": upside, "rating": rating}


def _label(text: str, figures: list[Figure], sheet: FactSheet, prompt: str) -> list[_Found]:
    mentions = _mentions(text)
    starts = [m.start for m in mentions]
    index = _index(sheet)
    tables = _Tables(text, mentions, starts)
    given: list[Figure] | None = None
    found: list[_Found] = []
    attributed: dict[int, _Mention] = {}
    for i, figure in enumerate(figures):
        binding = _attribution(text, figures, i, mentions, starts, attributed, tables)
        if binding is not None and binding[0].keyword.startswith(_INFERRED):
            inferred = _inferred(index, figure, binding[0], text)
            if inferred is not None:
                attributed[i] = binding[0]
                found.append(inferred)
                continue
            binding = None
        if binding is not None:
            mention, fits = binding
            quantity = mention.quantity
            if not fits:
                found.append(_misbound(index, figure, quantity, mention.keyword))
                continue
            attributed[i] = mention
            as_unit = _in_unit(figure, quantity)
            candidates = index.by_quantity.get(quantity.name)
            if candidates:
                base_ok = partial(_base_case_allowed, text, figure.start)
                named = _named(index, as_unit, quantity, mention.keyword, candidates, base_ok)
                if as_unit is not figure:  # checked in the quantity's unit, reported as written
                    named = named._replace(check=named.check._replace(kind=figure.kind, value=figure.value))
                found.append(named)
                continue
            if given is None and prompt:
                given = [f for f in extract_figures(prompt) if f.kind != "count"]
            if any(g.kind == as_unit.kind and as_unit.matches(g.value) for g in given or ()):
                reason = "given in the prompt"
                check = FigureCheck(*_base(figure), "grounded", quantity.name, mention.keyword, reason=reason)
                found.append(_Found(figure, check, figure.value))
                continue
            # The data holds no value of the quantity the text names ("a dividend yield of 0.4%" where the engine
            # computes none): the figure cannot be traced, whatever other fact it happens to equal.
            reason = f"the text names {quantity.label} ('{mention.keyword}'), which the data holds no value of"
            check = FigureCheck(*_base(figure), "unsupported", quantity.name, mention.keyword, reason=reason)
            found.append(_Found(figure, check, figure.value))
            continue
        key = (figure.raw, figure.kind)
        if key not in index.general:
            matched = sheet.check(figure)
            index.general[key] = (_label_of(matched), tuple(f.name for f in matched[:8])) if matched else None
        general = index.general[key]
        if general is not None:
            found.append(_Found(figure, FigureCheck(*_base(figure), general[0], facts=general[1]), figure.value))
            continue
        if prompt:
            if given is None:
                given = [f for f in extract_figures(prompt) if f.kind != "count"]
            if any(g.kind == figure.kind and figure.matches(g.value) for g in given):
                check = FigureCheck(*_base(figure), "grounded", reason="given in the prompt")
                found.append(_Found(figure, check, figure.value))
                continue
        check = FigureCheck(*_base(figure), "unsupported", reason="matches no fact of the company or the engine")
        found.append(_Found(figure, check, figure.value))
    return found


def _inferred(index: _SheetIndex, figure: Figure, mention: _Mention, text: str) -> _Found | None:
    """A signed percentage read as the change of the level next to it, when it matches that change; else None
    (it is then checked by value alone)."""
    quantity = mention.quantity
    candidates = index.by_quantity.get(quantity.name)
    if not candidates:
        return None
    keyword = mention.keyword.removeprefix(_INFERRED)
    named = _named(index, figure, quantity, keyword, candidates, partial(_base_case_allowed, text, figure.start))
    return named if named.check.label in ("grounded", "derived_correct") else None


def _base(figure: Figure) -> tuple[str, str, float, int, int]:
    return figure.raw, figure.kind, figure.value, figure.start, figure.end


_UNIT_WORDS = {
    "currency": "an amount of money",
    "percent": "a percentage",
    "bp": "basis points",
    "multiple": "a multiple",
    "number": "a plain number",
}


def _fits(kind: str, quantity: Quantity) -> bool:
    """Whether a figure of ``kind`` can state ``quantity``: its own kinds, and a bare number for a percentage, a
    multiple or a per-share amount (a table's "| Gross margin | 46.2 |")."""
    kinds = quantity.kinds
    return kind in kinds or (kind == "number" and not kinds.isdisjoint(("percent", "multiple", "currency")))


def _in_unit(figure: Figure, quantity: Quantity) -> Figure:
    """``figure`` read in ``quantity``'s unit: a bare number as percentage points, a multiple or dollars."""
    if figure.kind != "number" or "number" in quantity.kinds:
        return figure
    if "percent" in quantity.kinds:
        return figure._replace(kind="percent", value=figure.value / 100, tolerance=figure.tolerance / 100)
    return figure._replace(kind="multiple" if "multiple" in quantity.kinds else "currency")


def _misbound(index: _SheetIndex, figure: Figure, quantity: Quantity, keyword: str) -> _Found:
    """A figure stated for ``quantity`` in a unit the quantity never has: wrong, with the quantity's values."""
    candidates = index.by_quantity.get(quantity.name, [])
    expected = tuple(dict.fromkeys(write_fact(f) for f in sorted(candidates, key=_priority)))[:3]
    units = " or ".join(sorted({_UNIT_WORDS[k] for k in quantity.kinds}))
    reason = (
        f"the text names {quantity.label} ('{keyword}'), which is {units}, "
        f"but states {figure.raw}, {_UNIT_WORDS.get(figure.kind, figure.kind)}"
    )
    label: Label = "derived_wrong" if quantity.derived else "unsupported"
    check = FigureCheck(*_base(figure), label, quantity.name, keyword, (), expected, reason, misbound=True)
    return _Found(figure, check, figure.value)


class _Tables:
    """The markdown tables of a text: for a figure that opens a cell of a body row, the quantity its row label
    names (the first cell) and the one its column header names. Built lazily, once per text."""

    def __init__(self, text: str, mentions: list[_Mention], starts: list[int]) -> None:
        self.text, self.mentions, self.starts = text, mentions, starts
        self._headers: dict[int, list[tuple[int, int]]] | None = None  # body line start -> header cell spans

    def _build(self) -> dict[int, list[tuple[int, int]]]:
        headers: dict[int, list[tuple[int, int]]] = {}
        lines: list[tuple[int, str]] = []
        offset = 0
        for line in self.text.split("\n"):
            lines.append((offset, line))
            offset += len(line) + 1
        k = 0
        while k < len(lines):
            start, line = lines[k]
            if _is_row(line) and k + 1 < len(lines) and _SEPARATOR.fullmatch(lines[k + 1][1].strip()):
                header = _cells(start, line)
                k += 2
                while k < len(lines) and _is_row(lines[k][1]):
                    headers[lines[k][0]] = header
                    k += 1
                continue
            k += 1
        return headers

    def binding(self, figure: Figure) -> tuple[_Mention | None, _Mention | None]:
        """(row-label mention, column-header mention) of a figure that opens a body cell, else (None, None)."""
        text = self.text
        line_start = text.rfind("\n", 0, figure.start) + 1
        if not text.startswith("|", line_start) and not text[line_start : figure.start].lstrip().startswith("|"):
            return None, None
        if self._headers is None:
            self._headers = self._build()
        header = self._headers.get(line_start)
        if header is None:
            return None, None
        line_end = text.find("\n", figure.start)
        cells = _cells(line_start, text[line_start : line_end if line_end >= 0 else len(text)])
        column = next((c for c, (lo, hi) in enumerate(cells) if lo <= figure.start < hi), None)
        if column is None:
            return None, None
        lo = cells[column][0]
        if text[lo : figure.start].strip(" \t*_") not in ("", "+", "-", "\u2212", "(", "$"):
            return None, None  # not the cell's first figure: its own words bind it, if any do
        row = self._first(*cells[0]) if column > 0 else None
        col = self._first(*header[column]) if column < len(header) else None
        return row, col

    def _first(self, lo: int, hi: int) -> _Mention | None:
        j = bisect.bisect_left(self.starts, lo)
        if j < len(self.mentions) and self.mentions[j].end <= hi:
            return self.mentions[j]
        return None


_SEPARATOR = re.compile(r"\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?")


def _is_row(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1


def _cells(offset: int, line: str) -> list[tuple[int, int]]:
    """(start, end) in the text of each cell of a table row (between the pipes)."""
    bars = [i for i, char in enumerate(line) if char == "|"]
    return [(offset + a + 1, offset + b) for a, b in zip(bars, bars[1:], strict=False)]


def _attribution(
    text: str,
    figures: list[Figure],
    i: int,
    mentions: list[_Mention],
    starts: list[int],
    attributed: dict[int, _Mention],
    tables: _Tables,
) -> tuple[_Mention, bool] | None:
    """The keyword that names figure ``i``, and whether the figure's unit fits its quantity.

    In order: the keyword right before it, with only linking words between, or else right after it, with only
    spaces between, when the unit fits; a percentage in brackets right after a named target or scenario value (its
    upside); the row label, else the column header, of the table cell the figure opens, when the unit fits. Failing
    those, a keyword right before it (or the cell's row label or column header) whose quantity is in another unit
    binds it as misbound ("cost of equity of $93.7B"), unless the keyword also serves as a verb or label
    (``LOOSE_KEYWORDS``). Fiscal years and dates are calendar labels and bind to nothing. None when nothing binds."""
    figure = figures[i]
    if figure.kind in CALENDAR_KINDS or figure.kind == "bp":  # basis points state shifts, not a level
        return None
    line_start = text.rfind("\n", 0, figure.start) + 1
    floor = max(line_start, figures[i - 1].end if i else 0)
    j = bisect.bisect_left(starts, figure.start) - 1
    while j >= 0 and mentions[j].end > figure.start:  # a keyword overlapping the figure is no name for it
        j -= 1
    before = None
    if j >= 0 and mentions[j].start >= floor and _links_only(text[mentions[j].end : figure.start]):
        before = mentions[j]
        if _fits(figure.kind, before.quantity):
            return before, True
    if (
        i
        and figure.kind == "percent"
        and (_signed(figure) or text.startswith(")", figure.end))
        and _PAREN_GAP.fullmatch(text, figures[i - 1].end, figure.start)
    ):
        # "price target $170.68 (+12.2%)", "bear $68.43 (-16.9%)": the upside to the value just named.
        previous = attributed.get(i - 1)
        if previous is not None and previous.quantity.name in ("price_target", "scenario_value"):
            return _Mention(figure.start, figure.start, QUANTITY_BY_NAME["upside"], "(upside)"), True
    k = bisect.bisect_left(starts, figure.end)
    if k < len(mentions):
        after = mentions[k]
        ceiling = figures[i + 1].start if i + 1 < len(figures) else len(text)
        if (
            after.end <= ceiling
            and figure.kind in after.quantity.kinds
            and _AFTER_GAP.fullmatch(text, figure.end, after.start)
        ):
            return after, True
    row, column = tables.binding(figure)
    for cell in (column, row):  # a column header over a row label: peer tables are labelled by company
        if cell is not None and _fits(figure.kind, cell.quantity):
            return cell, True
    for named in (before, column, row):
        if named is None:
            continue
        if figure.kind == "percent" and named.quantity.kinds <= _LEVEL_KINDS:
            # A signed percentage right by a level is its change ("revenue +2.0%", "| EPS | $6.08 | $6.13 | -0.8%
            # |", a "vs price" column): checked as that change where the data has one. Any other percentage by a
            # per-share amount is misbound; by a company total ("EBITDA 31.1%" in a list of margins, "55.0% of
            # revenue", "NII / revenue") it is left unattributed.
            change = _CHANGE_OF.get(named.quantity.name)
            adjacent = named is not before or not text[named.end : figure.start].strip(" \t*_:")
            if change is not None and _signed(figure) and adjacent and not _ratio_part(text, named):
                return named._replace(quantity=QUANTITY_BY_NAME[change], keyword=_INFERRED + named.keyword), True
            if named.quantity.kinds != _CURRENCY or normalise_keyword(named.keyword) in _LOOSE:
                continue
            return named, False  # a per-share amount stated as a percentage ("a DCF value of -23.3%")
        if normalise_keyword(named.keyword) not in _LOOSE:
            return named, False
    return None


# Marks a binding inferred from a level's keyword (a signed percentage read as its change): a value that does not
# match the change is checked by value alone, since "EBITDA -18.3%" may as well be a margin.
_INFERRED = "\x00"


def _ratio_part(text: str, mention: _Mention) -> bool:
    """Whether the keyword is one side of a ratio ("net interest income / revenue", "FCF/revenue")."""
    return "/" in text[max(0, mention.start - 3) : mention.start] or "/" in text[mention.end : mention.end + 3]


_LEVEL_KINDS = frozenset({"currency", "number"})
# The quantity a percentage next to a level states: a growth rate, or the upside of a value against the price.
_CHANGE_OF = {
    "revenue": "revenue_growth",
    "eps": "eps_growth",
    "ebitda": "ebitda_growth",
    "price": "upside",
    "price_target": "upside",
    "scenario_value": "upside",
    "sector_value": "upside",
    "dcf_value": "upside",
    "comps_value": "upside",
}


def _label_of(matched: list[Fact]) -> Label:
    # Years and dates are calendar labels (FY2024, FY2029E, 2024-12-31), grounded when they are in the data.
    grounded = any(is_reported(f.name) or f.kind in ("year", "date") for f in matched)
    return "grounded" if grounded else "derived_correct"


def _named(
    index: _SheetIndex,
    figure: Figure,
    quantity: Quantity,
    keyword: str,
    candidates: list[Fact],
    base_case_ok: Callable[[], bool],
) -> _Found:
    value = -abs(figure.value) if quantity.sign == "negated" and figure.value >= 0 else figure.value
    base = _base(figure)
    known = _match_named(index, figure, quantity, value, False)
    if not known[1] and base_case_ok():
        known = _match_named(index, figure, quantity, value, True)
    if known[1]:
        return _Found(figure, FigureCheck(*base, known[0], quantity.name, keyword, known[1]), value)
    expected = tuple(dict.fromkeys(write_fact(f, figure) for f in sorted(candidates, key=_priority)))[:3]
    label: Label = "derived_wrong" if quantity.derived else "unsupported"
    reason = f"the text names {quantity.label} ('{keyword}'), but {figure.raw} matches none of its values in the data"
    return _Found(figure, FigureCheck(*base, label, quantity.name, keyword, (), expected, reason), value)


def _match_named(
    index: _SheetIndex, figure: Figure, quantity: Quantity, value: float, base: bool
) -> tuple[Label, tuple[str, ...]]:
    key = (quantity.name, figure.raw, figure.kind, value, base)
    known = index.named.get(key)
    if known is None:
        matched = _within(index, quantity.name, figure, value, base)
        if not matched and quantity.sign == "any" and not _signed(figure):
            matched = _within(index, quantity.name, figure, -value, base)
        known = index.named[key] = (
            (_label_of(matched), tuple(f.name for f in matched[:8])) if matched else ("derived_wrong", ())
        )
    return known


# Where a condition context's base-case values may be named: in a section about the market condition, or on a
# line that mentions the base case or compares two values ("the price target from $151.87 to $170.68").
_CONDITION_HEADER = re.compile(r"(?im)^#{1,6}[^\n]*(?:condition|overlay|stress|scenario:)[^\n]*$")
_ANY_HEADER = re.compile(r"(?m)^#{1,6}\s")
_BASE_LINE = re.compile(r"(?i)base[\s-]case|\bfrom\b[^.;\n]*\bto\b")


def _base_case_allowed(text: str, position: int) -> bool:
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    if _BASE_LINE.search(text, start, end if end >= 0 else len(text)):
        return True
    headers = list(_ANY_HEADER.finditer(text, 0, position))
    return bool(headers) and _CONDITION_HEADER.match(text, headers[-1].start()) is not None


def _signed(figure: Figure) -> bool:
    return figure.raw.startswith(("+", "-", "\u2212", "(", "$(")) or figure.value < 0


def _stated(found: list[_Found], quantity: str, text: str, near: _Found | None = None) -> _Found | None:
    """The figure the text attributes to ``quantity`` most often (by value as written; first on a tie); with
    ``near``, only figures on a line that also states ``near`` compete when there are any (the upside that goes
    with the stated price target, not a scenario's)."""
    names = ("upside", "downside") if quantity == "upside" else (quantity,)
    named = [f for f in found if f.check.quantity in names]
    if not named:
        return None
    if near is not None:
        paired = [f for f in named if near.figure.raw in line_at(text, f.figure.start)]
        named = paired or named
    counts = Counter(round(f.value, 12) for f in named)
    top = max(counts.values())
    return next(f for f in named if counts[round(f.value, 12)] == top)


def line_at(text: str, at: int) -> str:
    """The whole line of ``text`` that holds position ``at`` (without its newline)."""
    end = text.find("\n", at)
    return text[text.rfind("\n", 0, at) + 1 : end if end >= 0 else len(text)]


def _as_upside(upside: _Found) -> str:
    """The stated upside as written, or a stated downside with the upside it means."""
    if upside.check.quantity == "downside":
        return f"{upside.figure.raw} downside (= {fmt_pct(upside.value, signed=True)})"
    return upside.figure.raw


def _upside_check(price: _Found | None, target: _Found | None, upside: _Found | None) -> ConsistencyCheck:
    name = "upside_matches_target_and_price"
    if price is None or target is None or upside is None:
        missing = [n for n, f in (("price", price), ("price target", target), ("upside", upside)) if f is None]
        return ConsistencyCheck(name, "skip", f"not stated: {', '.join(missing)}")
    p, t = price.figure, target.figure
    if p.value <= 0:
        return ConsistencyCheck(name, "skip", f"stated price {p.raw} is not positive")
    implied = t.value / p.value - 1
    # Rounding of the stated target and price carries into the ratio.
    slack = t.tolerance / p.value + abs(t.value) * p.tolerance / (p.value * (p.value - p.tolerance or p.value))
    error = abs(upside.value - implied)
    ok = error <= upside.figure.tolerance * (1 + 1e-6) + slack + 1e-9
    values: dict[str, float | str | None] = {
        "stated_price": p.raw,
        "stated_target": t.raw,
        "stated_upside": _as_upside(upside),
        "implied_upside": round(implied, 6),
    }
    detail = f"stated upside {_as_upside(upside)} vs {t.raw} / {p.raw} - 1 = {fmt_pct(implied, 2, signed=True)}" + (
        "" if ok else f" (off by {error * 100:.2f} points)"
    )
    return ConsistencyCheck(name, "pass" if ok else "fail", detail, values)


def _rating_check(rating: str | None, upside: _Found | None, bands: RatingBands) -> ConsistencyCheck:
    name = "rating_matches_bands"
    if rating is None or upside is None:
        missing = [n for n, f in (("rating", rating), ("upside", upside)) if f is None]
        return ConsistencyCheck(name, "skip", f"not stated: {', '.join(missing)}")
    tol = upside.figure.tolerance
    allowed = sorted({rating_for_upside(upside.value + d, bands) for d in (-tol, 0.0, tol)})
    ok = rating in allowed
    buy, sell = fmt_pct(bands.buy_threshold, signed=True), fmt_pct(bands.sell_threshold, signed=True)
    band_words = f"Buy at or above {buy}, Sell below {sell}"
    detail = (
        f"stated {rating.upper()} with upside {_as_upside(upside)}; the bands ({band_words}) give {'/'.join(allowed)}"
    )
    values: dict[str, float | str | None] = {
        "stated_rating": rating,
        "stated_upside": _as_upside(upside),
        "band_rating": "/".join(allowed),
        "buy_threshold": bands.buy_threshold,
        "sell_threshold": bands.sell_threshold,
    }
    return ConsistencyCheck(name, "pass" if ok else "fail", detail, values)


def _wacc_check(wacc: _Found | None, growth: _Found | None) -> ConsistencyCheck:
    name = "wacc_above_terminal_growth"
    if wacc is None or growth is None:
        missing = [n for n, f in (("WACC", wacc), ("terminal growth", growth)) if f is None]
        return ConsistencyCheck(name, "skip", f"not stated: {', '.join(missing)}")
    ok = wacc.value > growth.value
    detail = f"stated WACC {wacc.figure.raw} {'>' if ok else '<='} stated terminal growth {growth.figure.raw}"
    values: dict[str, float | str | None] = {
        "stated_wacc": wacc.figure.raw,
        "stated_terminal_growth": growth.figure.raw,
    }
    return ConsistencyCheck(name, "pass" if ok else "fail", detail, values)


def _key_facts(
    sheet: FactSheet, family: str | None, found: list[_Found], ratings: list[str], engine_rating: float | str | None
) -> list[KeyFact]:
    if family is None or family not in KEY_FACTS:
        return []
    year = _index(sheet).latest_year
    named: set[str] = set()
    for f in found:
        if f.check.label in ("grounded", "derived_correct"):
            named.update(f.check.facts)
    result = []
    # A bank, insurer, utility or REIT is valued with a sector model that discounts at the cost of equity: its
    # key facts are the model's value and the cost of equity, in place of the DCF value and the WACC.
    sector = next(
        (m for m in ("excess_return", "dividend_discount") if f"analysis.{m}.value_per_share" in sheet.facts), None
    )
    keys = list(KEY_FACTS[family])
    # (A utility's financial analysis still sets ROIC against the WACC; a lender's sets ROE against ke.)
    if sector == "excess_return" or (sector is not None and family != "financial_analysis"):
        keys = [("cost_of_equity" if k == "wacc" else k) for k in keys]
        keys = [k for i, k in enumerate(keys) if k not in keys[:i]]
    for key in keys:
        if key == "rating":
            if isinstance(engine_rating, str):
                result.append(KeyFact(key, engine_rating in ratings, engine_rating.upper()))
            continue
        source = KEY_FACT_SOURCES[key]
        if sector is not None and key == "dcf_value":
            source = f"analysis.{sector}.value_per_share"
        fact = sheet.facts.get(source.format(fy=year))
        if fact is None:
            continue
        result.append(KeyFact(key, fact.name in named or _any_matches(found, fact), write_fact(fact)))
    return result


def _any_matches(found: list[_Found], fact: Fact) -> bool:
    # ``FactSheet.check`` lists the facts of the first compatible kind only; compare directly as a fallback.
    return any(
        f.check.label in ("grounded", "derived_correct") and _matches(f.figure, f.figure.value, fact) for f in found
    )
