"""Where a company stands in its peer group: peer medians, its ranks, its share of the group's revenue.

Definitions (latest fiscal year; ratios as in ``equitune.finance.ratios``, multiples as in
``equitune.finance.comparables``):

* **Metrics** compared: revenue and market cap (millions), revenue growth, gross / operating / EBITDA / net /
  FCF margin, ROIC, EV/EBITDA, P/E, EV/Sales, ROE and P/B (banks and insurers; None for others).
* **Peer median**: the median of the peers that report the metric (the company itself excluded), by linear
  interpolation between order statistics as for the comparables; ``None`` when no peer reports it.
* **Rank**: the company's position among itself and the peers that report the metric, 1 = highest value
  (largest revenue, fastest growth, widest margin, richest multiple); ties share the better position
  (position = 1 + the number of companies with a strictly higher value). ``None`` when the company does not
  report the metric.
* **Revenue totals**: the peers' revenues summed (peers reporting revenue), and the same plus the company's;
  the company's **revenue share** is its revenue over that group total.
* **Gaps**: the company's growth, margins and ROIC minus the peer median (fractions; 0.01 = 100 bp).
* **Premiums**: the company's multiple over the peer median, minus one (negative = a discount).
"""

from __future__ import annotations

from pydantic import Field

from equitune.finance.assumptions import ValuationAssumptions
from equitune.finance.base import ResultModel, positive_div, quantile
from equitune.finance.comparables import PeerMultiples, peer_multiples
from equitune.finance.ratios import FinancialRatios, compute_ratios
from equitune.market.models import Company

# The metrics compared across the group, in the order they are reported.
METRICS: tuple[str, ...] = (
    "revenue",
    "market_cap",
    "revenue_growth",
    "gross_margin",
    "operating_margin",
    "ebitda_margin",
    "net_margin",
    "fcf_margin",
    "roic",
    "ev_ebitda",
    "pe",
    "ev_sales",
    "roe",
    "pb",
)


class GroupMetrics(ResultModel):
    """One set of the compared figures: a company's own, or the peers' medians (None = not available)."""

    revenue: float | None = Field(description="Latest fiscal-year revenue, millions.")
    market_cap: float | None = Field(description="Market capitalisation, millions.")
    revenue_growth: float | None = Field(description="Revenue growth over the prior year.")
    gross_margin: float | None = Field(description="Gross profit / revenue.")
    operating_margin: float | None = Field(description="Operating income / revenue.")
    ebitda_margin: float | None = Field(description="EBITDA / revenue.")
    net_margin: float | None = Field(description="Net income / revenue.")
    fcf_margin: float | None = Field(description="Free cash flow / revenue.")
    roic: float | None = Field(description="NOPAT / invested capital.")
    ev_ebitda: float | None = Field(description="Enterprise value / EBITDA.")
    pe: float | None = Field(description="Market cap / net income.")
    ev_sales: float | None = Field(description="Enterprise value / revenue.")
    roe: float | None = Field(default=None, description="Net income / total equity.")
    pb: float | None = Field(default=None, description="Market cap / common equity (banks and insurers).")


class PeerFigures(GroupMetrics):
    """One peer's compared figures, with its ticker and name."""

    ticker: str
    name: str


class Rank(ResultModel):
    """The company's position on one metric among itself and the peers that report it."""

    position: int = Field(ge=1, description="1 = highest value; ties share the better position.")
    out_of: int = Field(ge=1, description="Companies ranked: the company plus the peers reporting the metric.")


class IndustryRanks(ResultModel):
    """The company's rank on each compared metric (None when the company does not report it)."""

    revenue: Rank | None = Field(description="By revenue (1 = largest).")
    market_cap: Rank | None = Field(description="By market cap (1 = largest).")
    revenue_growth: Rank | None = Field(description="By revenue growth (1 = fastest).")
    gross_margin: Rank | None = Field(description="By gross margin (1 = widest).")
    operating_margin: Rank | None = Field(description="By operating margin (1 = widest).")
    ebitda_margin: Rank | None = Field(description="By EBITDA margin (1 = widest).")
    net_margin: Rank | None = Field(description="By net margin (1 = widest).")
    fcf_margin: Rank | None = Field(description="By FCF margin (1 = widest).")
    roic: Rank | None = Field(description="By ROIC (1 = highest).")
    ev_ebitda: Rank | None = Field(description="By EV/EBITDA (1 = richest).")
    pe: Rank | None = Field(description="By P/E (1 = richest).")
    ev_sales: Rank | None = Field(description="By EV/Sales (1 = richest).")
    roe: Rank | None = Field(default=None, description="By ROE (1 = highest).")
    pb: Rank | None = Field(default=None, description="By P/B (1 = richest).")


class IndustrySummary(ResultModel):
    """The company against its peer group: its figures, peer medians, ranks, revenue share, gaps, premiums."""

    ticker: str
    peers: list[PeerFigures] = Field(description="Each peer's figures, in the order given.")
    peer_count: int = Field(description="Number of peers compared (the company excluded).")
    company: GroupMetrics = Field(description="The company's own figures.")
    peer_median: GroupMetrics = Field(description="Median of the peers reporting each figure.")
    ranks: IndustryRanks = Field(description="The company's rank on each figure, 1 = highest.")
    peer_revenue_total: float | None = Field(description="Sum of the peers' revenue, millions.")
    group_revenue_total: float | None = Field(description="Peers' revenue plus the company's, millions.")
    revenue_share: float | None = Field(description="Company revenue / group revenue total.")
    revenue_to_peer_median: float | None = Field(description="Company revenue / median peer revenue.")
    revenue_growth_gap: float | None = Field(description="Company revenue growth - peer median.")
    gross_margin_gap: float | None = Field(description="Company gross margin - peer median.")
    operating_margin_gap: float | None = Field(description="Company operating margin - peer median.")
    ebitda_margin_gap: float | None = Field(description="Company EBITDA margin - peer median.")
    net_margin_gap: float | None = Field(description="Company net margin - peer median.")
    fcf_margin_gap: float | None = Field(description="Company FCF margin - peer median.")
    roic_gap: float | None = Field(description="Company ROIC - peer median.")
    ev_ebitda_premium: float | None = Field(description="Company EV/EBITDA / peer median - 1.")
    pe_premium: float | None = Field(description="Company P/E / peer median - 1.")
    ev_sales_premium: float | None = Field(description="Company EV/Sales / peer median - 1.")
    roe_gap: float | None = Field(default=None, description="Company ROE - peer median.")
    pb_premium: float | None = Field(default=None, description="Company P/B / peer median - 1.")


_EMPTY = GroupMetrics(**dict.fromkeys(METRICS))


def _metrics(company: Company, ratios: FinancialRatios) -> GroupMetrics:
    """The compared figures of one company from its record, ratios and multiples."""
    row: PeerMultiples | None = peer_multiples(company)[0]
    revenue = company.latest.revenue if company.financials else None
    return GroupMetrics(
        revenue=revenue,
        market_cap=row.market_cap if row is not None else None,
        revenue_growth=ratios.revenue_growth,
        gross_margin=ratios.gross_margin,
        operating_margin=ratios.operating_margin,
        ebitda_margin=ratios.ebitda_margin,
        net_margin=ratios.net_margin,
        fcf_margin=ratios.fcf_margin,
        roic=ratios.roic,
        ev_ebitda=row.ev_ebitda if row is not None else None,
        pe=row.pe if row is not None else None,
        ev_sales=row.ev_sales if row is not None else None,
        roe=ratios.roe,
        pb=row.pb if row is not None else None,
    )


def median_of(values: list[float | None]) -> float | None:
    """Median of the values that are not None (linear interpolation), or None when there are none."""
    present = sorted(v for v in values if v is not None)
    return quantile(present, 0.5) if present else None


def rank_of(value: float | None, others: list[float | None]) -> Rank | None:
    """Position of ``value`` among itself and ``others`` (None entries skipped), 1 = highest; ties share
    the better position. None when ``value`` is None."""
    if value is None:
        return None
    present = [v for v in others if v is not None]
    return Rank(position=1 + sum(1 for v in present if v > value), out_of=len(present) + 1)


def _gap(company: float | None, median: float | None) -> float | None:
    return None if company is None or median is None else company - median


def _premium(company: float | None, median: float | None) -> float | None:
    ratio = positive_div(company, median)
    return None if ratio is None else ratio - 1.0


def industry_summary(
    company: Company,
    peers: list[Company],
    peer_ratios: dict[str, FinancialRatios],
    assumptions: ValuationAssumptions | None = None,
) -> IndustrySummary:
    """The company against ``peers`` (see the module docstring for every definition). ``peer_ratios`` holds
    each peer's ratios by ticker (computed when missing; a peer without fiscal years reports nothing);
    ``assumptions`` only decide the tax rate of ROIC for the company and any peer whose ratios are computed
    here. Raises ``FinanceError`` when the company has no fiscal year."""
    a = assumptions or ValuationAssumptions()
    own = _metrics(company, compute_ratios(company, a))
    rows = [_metrics(p, peer_ratios.get(p.ticker) or compute_ratios(p, a)) if p.financials else _EMPTY for p in peers]
    peer_figures = [
        PeerFigures(ticker=p.ticker, name=p.name, **r.model_dump()) for p, r in zip(peers, rows, strict=True)
    ]

    def column(name: str) -> list[float | None]:
        return [getattr(r, name) for r in rows]

    median = GroupMetrics(**{name: median_of(column(name)) for name in METRICS})
    ranks = IndustryRanks(**{name: rank_of(getattr(own, name), column(name)) for name in METRICS})

    peer_revenues = [v for v in column("revenue") if v is not None]
    peer_total = sum(peer_revenues) if peer_revenues else None
    group = [*peer_revenues, *([own.revenue] if own.revenue is not None else [])]
    group_total = sum(group) if group else None

    def gap(name: str) -> float | None:
        return _gap(getattr(own, name), getattr(median, name))

    def premium(name: str) -> float | None:
        return _premium(getattr(own, name), getattr(median, name))

    return IndustrySummary(
        ticker=company.ticker,
        peers=peer_figures,
        peer_count=len(peers),
        company=own,
        peer_median=median,
        ranks=ranks,
        peer_revenue_total=peer_total,
        group_revenue_total=group_total,
        revenue_share=positive_div(own.revenue, group_total),
        revenue_to_peer_median=positive_div(own.revenue, median.revenue),
        revenue_growth_gap=gap("revenue_growth"),
        gross_margin_gap=gap("gross_margin"),
        operating_margin_gap=gap("operating_margin"),
        ebitda_margin_gap=gap("ebitda_margin"),
        net_margin_gap=gap("net_margin"),
        fcf_margin_gap=gap("fcf_margin"),
        roic_gap=gap("roic"),
        ev_ebitda_premium=premium("ev_ebitda"),
        pe_premium=premium("pe"),
        ev_sales_premium=premium("ev_sales"),
        roe_gap=gap("roe"),
        pb_premium=premium("pb"),
    )
