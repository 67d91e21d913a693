"""Comparable-company valuation: peer multiples, their quartiles, and the per-share values they imply.

* **Peers**: companies of the universe in the same GICS sub-industry, the company itself excluded; when
  there are fewer than ``min_peers`` of them, every other company of the same GICS sector.
* **Multiples** (latest fiscal year, market values of the record): EV/EBITDA and EV/Sales with
  EV = market cap + total debt - cash; P/E = market cap / net income. A peer is left out of a multiple when
  the denominator (or EV) is missing or not positive; each exclusion is listed with its reason.
* **Statistics**: median and first/third quartiles by linear interpolation between order statistics
  (Excel QUARTILE.INC, numpy's default, ``statistics.quantiles(method="inclusive")``).
* **Implied value per share** at the median multiple: EV multiples give EV = multiple * the company's EBITDA
  (or revenue), then equity = EV - debt + cash; P/E gives equity = multiple * net income; each divided by
  diluted shares. The quartiles give the low / high of the range.
* **Comparables value per share**: weighted average of the implied values that are positive, weights
  ``comps_weight_ev_ebitda`` / ``comps_weight_pe`` / ``comps_weight_ev_sales`` re-normalised over them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from equitune.errors import FinanceError
from equitune.finance.assumptions import ValuationAssumptions
from equitune.finance.base import ResultModel, positive_div, quartiles, safe_div
from equitune.finance.inputs import check_finite, latest_year, market_data
from equitune.market.models import Company, FiscalYear

MultipleName = Literal["ev_ebitda", "pe", "ev_sales", "pb"]
MULTIPLES: tuple[MultipleName, ...] = ("ev_ebitda", "pe", "ev_sales")
# Banks and insurers: enterprise value has no meaning (debt is raw material), so they are compared on P/E and
# price to book (market cap / common equity); the EV multiples are listed as not applicable.
INSTITUTION_MULTIPLES: tuple[MultipleName, ...] = ("ev_ebitda", "pe", "ev_sales", "pb")
PeerBasis = Literal["sub_industry", "sector", "institutions"]
_EV_MULTIPLES: tuple[MultipleName, ...] = ("ev_ebitda", "ev_sales")

QUARTILE_METHOD = "linear interpolation between order statistics (Excel QUARTILE.INC / numpy 'linear')"
COMBINATION_METHOD = (
    "weighted average of the positive implied values per share (EV/EBITDA, P/E, EV/Sales weights "
    "re-normalised over the multiples that give one)"
)


class PeerMultiples(ResultModel):
    """One peer's valuation multiples (None where the peer was excluded from that multiple)."""

    ticker: str
    name: str
    sub_industry: str
    market_cap: float = Field(description="Market capitalisation, millions.")
    enterprise_value: float | None = Field(description="Market cap + debt - cash, millions.")
    ev_ebitda: float | None = Field(description="EV / EBITDA.")
    pe: float | None = Field(description="Market cap / net income.")
    ev_sales: float | None = Field(description="EV / revenue.")
    pb: float | None = Field(default=None, description="Market cap / common equity (banks and insurers).")


class PeerExclusion(ResultModel):
    """A peer left out of one multiple (or all of them), and why."""

    ticker: str
    multiple: MultipleName | Literal["all"]
    reason: str


class MultipleSummary(ResultModel):
    """Peer statistics of one multiple and the per-share value it implies for the company."""

    multiple: MultipleName
    peer_count: int = Field(description="Peers with a valid value of this multiple.")
    low: float | None = Field(description="First quartile of the peers' multiple.")
    median: float | None = Field(description="Median of the peers' multiple.")
    high: float | None = Field(description="Third quartile of the peers' multiple.")
    company_metric: float | None = Field(description="The company's EBITDA, net income or revenue, millions.")
    company_multiple: float | None = Field(description="The company's own current multiple.")
    implied_value_per_share: float | None = Field(description="Value per share at the peer median.")
    implied_value_low: float | None = Field(description="Value per share at the first quartile.")
    implied_value_high: float | None = Field(description="Value per share at the third quartile.")
    weight: float = Field(description="Configured weight of this multiple.")
    effective_weight: float = Field(description="Weight in the comparables value after re-normalising.")
    note: str | None = Field(default=None, description="Why this multiple gives no value, when it does not.")


class ComparablesResult(ResultModel):
    """Peers, their multiples, and the comparables value per share."""

    ticker: str
    basis: PeerBasis = Field(description="Whether peers come from the sub-industry or the whole sector.")
    group: str = Field(description="The sub-industry or sector name peers were drawn from.")
    sub_industry_peer_count: int = Field(description="Other companies in the sub-industry.")
    min_peers: int = Field(description="Sub-industry peers needed before falling back to the sector.")
    peers: list[PeerMultiples] = Field(description="Peers, by ticker.")
    excluded: list[PeerExclusion] = Field(description="Peers left out of a multiple, with the reason.")
    multiples: list[MultipleSummary] = Field(description="EV/EBITDA, P/E and EV/Sales statistics.")
    total_debt: float = Field(description="Company debt used in the EV-to-equity bridge, millions.")
    cash: float = Field(description="Company cash used in the EV-to-equity bridge, millions.")
    diluted_shares: float = Field(description="Company diluted shares, millions.")
    value_per_share: float | None = Field(description="Comparables value per share (None if no multiple).")
    meaningful: bool = Field(description="True when value_per_share is a positive number.")
    issues: list[str] = Field(default_factory=list, description="Why the value is missing, when it is.")
    quartile_method: str = Field(default=QUARTILE_METHOD, description="How quartiles are computed.")
    combination_method: str = Field(default=COMBINATION_METHOD, description="How implied values are combined.")

    def summary(self, multiple: MultipleName) -> MultipleSummary:
        """The statistics of ``multiple``."""
        return next(m for m in self.multiples if m.multiple == multiple)


# --------------------------------------------------------------------------------------------------- peers


def select_peers(
    company: Company, universe: list[Company], min_peers: int = 3
) -> tuple[list[Company], PeerBasis, str, int]:
    """Peers of ``company`` in ``universe``: the same GICS sub-industry (itself excluded); when it has fewer
    than ``min_peers`` others, a bank or insurer falls back to every other bank and insurer, any other company
    to the rest of its sector less the banks and insurers (a lender's multiples say nothing about a card
    network's). Returns the peers sorted by ticker, the basis, the group name and the sub-industry count."""
    others = {c.ticker: c for c in universe if c.ticker.upper() != company.ticker.upper()}
    same_sector = [c for _, c in sorted(others.items()) if c.sector.casefold() == company.sector.casefold()]
    sub_industry = [c for c in same_sector if c.sub_industry.casefold() == company.sub_industry.casefold()]
    if len(sub_industry) >= min_peers:
        return sub_industry, "sub_industry", company.sub_industry, len(sub_industry)
    if company.institution is not None:
        institutions = [c for c in same_sector if c.institution is not None]
        return institutions, "institutions", "banks and insurers", len(sub_industry)
    return [c for c in same_sector if c.institution is None], "sector", company.sector, len(sub_industry)


def enterprise_value(market_cap: float, total_debt: float | None, cash: float | None) -> float | None:
    """EV = market cap + total debt - cash; ``None`` when debt or cash is not reported."""
    if total_debt is None or cash is None:
        return None
    return market_cap + total_debt - cash


def peer_multiples(peer: Company) -> tuple[PeerMultiples | None, list[PeerExclusion]]:
    """The peer's EV/EBITDA, P/E and EV/Sales from its latest fiscal year, with an exclusion (and reason)
    for each multiple it cannot give; ``None`` when it gives none (no figures or no market value)."""
    try:
        check_finite(peer)
        fy = latest_year(peer)
        cap = market_data(peer).market_cap
    except FinanceError as exc:
        return None, [PeerExclusion(ticker=peer.ticker, multiple="all", reason=str(exc))]
    excluded: list[PeerExclusion] = []

    def skip(multiple: MultipleName, reason: str) -> None:
        excluded.append(PeerExclusion(ticker=peer.ticker, multiple=multiple, reason=reason))

    ev = enterprise_value(cap, fy.total_debt, fy.cash)
    ev_ebitda = ev_sales = None
    if ev is None:
        for m in _EV_MULTIPLES:
            skip(m, "total debt or cash not reported, so no enterprise value")
    elif ev <= 0:
        for m in _EV_MULTIPLES:
            skip(m, f"enterprise value {ev:,.0f} not positive (cash exceeds market cap plus debt)")
    else:
        ev_ebitda = positive_div(ev, fy.ebitda)
        if ev_ebitda is None:
            skip("ev_ebitda", f"EBITDA {_shown(fy.ebitda)} not positive")
        ev_sales = positive_div(ev, fy.revenue)
        if ev_sales is None:
            skip("ev_sales", f"revenue {_shown(fy.revenue)} not positive")
    pe = positive_div(cap, fy.net_income)
    if pe is None:
        skip("pe", f"net income {_shown(fy.net_income)} not positive")
    pb = None
    if peer.institution is not None:
        pb = positive_div(cap, _book(fy))
        if pb is None:
            skip("pb", f"common equity {_shown(_book(fy))} not positive")
    row = PeerMultiples(
        ticker=peer.ticker,
        name=peer.name,
        sub_industry=peer.sub_industry,
        market_cap=cap,
        enterprise_value=ev,
        ev_ebitda=ev_ebitda,
        pe=pe,
        ev_sales=ev_sales,
        pb=pb,
    )
    return row, excluded


def _book(fy: FiscalYear) -> float | None:
    return fy.common_equity if fy.common_equity is not None else fy.total_equity


def _shown(value: float | None) -> str:
    return "not reported" if value is None else f"{value:,.0f}"


# --------------------------------------------------------------------------------------------------- value


def implied_value_per_share(
    multiple: MultipleName,
    multiple_value: float | None,
    company_metric: float | None,
    total_debt: float,
    cash: float,
    diluted_shares: float,
) -> float | None:
    """Value per share implied by applying ``multiple_value`` to the company's metric: for EV multiples
    ``(multiple * metric - debt + cash) / shares``, for P/E and P/B ``multiple * metric / shares``. ``None``
    when the multiple or the metric is missing or not positive (a multiple of a loss is no value)."""
    if multiple_value is None or company_metric is None or multiple_value <= 0 or company_metric <= 0:
        return None
    equity = multiple_value * company_metric
    if multiple in _EV_MULTIPLES:
        equity += cash - total_debt
    return safe_div(equity, diluted_shares)


def combine_implied_values(
    values: dict[MultipleName, float | None], weights: dict[MultipleName, float]
) -> tuple[float | None, dict[MultipleName, float]]:
    """Weighted average of the positive implied values, weights re-normalised over them; returns the value
    (``None`` when none is usable) and the effective weight of every multiple."""
    usable = {m: v for m, v in values.items() if v is not None and v > 0 and weights.get(m, 0.0) > 0}
    total = sum(weights[m] for m in usable)
    effective: dict[MultipleName, float] = {m: (weights[m] / total if m in usable else 0.0) for m in values}
    if not usable:
        return None, effective
    return sum(effective[m] * v for m, v in usable.items()), effective


def comps_weights(assumptions: ValuationAssumptions, institution: bool = False) -> dict[MultipleName, float]:
    """The configured weight of each multiple in the comparables value (banks and insurers: P/E and P/B only)."""
    if institution:
        return {"ev_ebitda": 0.0, "pe": assumptions.comps_weight_pe, "ev_sales": 0.0, "pb": assumptions.comps_weight_pb}
    return {
        "ev_ebitda": assumptions.comps_weight_ev_ebitda,
        "pe": assumptions.comps_weight_pe,
        "ev_sales": assumptions.comps_weight_ev_sales,
    }


def compare_with_peers(
    company: Company, universe: list[Company], assumptions: ValuationAssumptions | None = None
) -> ComparablesResult:
    """Comparable-company valuation of ``company`` against peers picked from ``universe`` (see the module
    docstring for the peer rule, the multiples, the quartile method and the combination). Raises
    ``FinanceError`` only when the company itself has no fiscal year or no market value."""
    a = assumptions or ValuationAssumptions()
    fy = latest_year(company)
    market = market_data(company)
    peers, basis, group, sub_count = select_peers(company, universe, a.min_peers)

    rows: list[PeerMultiples] = []
    excluded: list[PeerExclusion] = []
    for peer in peers:
        row, skipped = peer_multiples(peer)
        excluded.extend(skipped)
        if row is not None:
            rows.append(row)

    debt = fy.total_debt if fy.total_debt is not None else 0.0
    cash = fy.cash if fy.cash is not None else 0.0
    own_ev = enterprise_value(market.market_cap, fy.total_debt, fy.cash)
    institution = company.institution is not None
    metrics: dict[MultipleName, float | None] = {
        "ev_ebitda": fy.ebitda,
        "pe": fy.net_income,
        "ev_sales": fy.revenue,
        "pb": _book(fy),
    }
    own: dict[MultipleName, float | None] = {
        "ev_ebitda": positive_div(own_ev, fy.ebitda) if own_ev is not None and own_ev > 0 else None,
        "pe": positive_div(market.market_cap, fy.net_income),
        "ev_sales": positive_div(own_ev, fy.revenue) if own_ev is not None and own_ev > 0 else None,
        "pb": positive_div(market.market_cap, _book(fy)),
    }
    weights = comps_weights(a, institution)
    summaries = [
        _summarise(
            m,
            [v for r in rows if (v := getattr(r, m)) is not None],
            metrics[m],
            own[m],
            weights[m],
            debt,
            cash,
            market.diluted_shares,
        )
        for m in (INSTITUTION_MULTIPLES if institution else MULTIPLES)
    ]
    if institution:
        na = "not applicable to a bank or insurer (no enterprise value: debt is an operating item)"
        summaries = [s.model_copy(update={"note": na}) if s.multiple in _EV_MULTIPLES else s for s in summaries]
    value, effective = combine_implied_values({s.multiple: s.implied_value_per_share for s in summaries}, weights)
    summaries = [s.model_copy(update={"effective_weight": effective[s.multiple]}) for s in summaries]
    issues: list[str] = []
    if not peers:
        issues.append(f"no peers in sector '{company.sector}' in the universe")
    if value is None:
        issues.append("no multiple gives a positive value per share")
    return ComparablesResult(
        ticker=company.ticker,
        basis=basis,
        group=group,
        sub_industry_peer_count=sub_count,
        min_peers=a.min_peers,
        peers=rows,
        excluded=excluded,
        multiples=summaries,
        total_debt=debt,
        cash=cash,
        diluted_shares=market.diluted_shares,
        value_per_share=value,
        meaningful=value is not None,
        issues=issues,
    )


_METRIC_LABEL: dict[MultipleName, str] = {
    "ev_ebitda": "EBITDA",
    "pe": "net income",
    "ev_sales": "revenue",
    "pb": "common equity",
}


def _summarise(
    multiple: MultipleName,
    values: list[float],
    metric: float | None,
    own: float | None,
    weight: float,
    debt: float,
    cash: float,
    shares: float,
) -> MultipleSummary:
    """Quartiles of one multiple across peers and the company's implied values at them."""
    low, mid, high = quartiles(values) if values else (None, None, None)

    def value_at(x: float | None) -> float | None:
        return implied_value_per_share(multiple, x, metric, debt, cash, shares)

    implied = value_at(mid)
    note: str | None = None
    if not values:
        note = "no peer has a valid value of this multiple"
    elif metric is None or metric <= 0:
        note = f"company {_METRIC_LABEL[multiple]} {_shown(metric)} not positive; multiple not applicable"
    elif implied is None or implied <= 0:
        note = "implied equity value not positive (debt exceeds implied enterprise value plus cash)"
    return MultipleSummary(
        multiple=multiple,
        peer_count=len(values),
        low=low,
        median=mid,
        high=high,
        company_metric=metric,
        company_multiple=own,
        implied_value_per_share=implied,
        implied_value_low=value_at(low),
        implied_value_high=value_at(high),
        weight=weight,
        effective_weight=0.0,
        note=note,
    )


def shifted_comparables_value(
    comps: ComparablesResult, ev_ebitda_shift: float, assumptions: ValuationAssumptions
) -> float | None:
    """The comparables value per share with the peers' median EV/EBITDA moved by ``ev_ebitda_shift`` turns
    (how a scenario re-rates the multiple); the other implied values are unchanged."""
    implied: dict[MultipleName, float | None] = {m.multiple: m.implied_value_per_share for m in comps.multiples}
    ev_ebitda = comps.summary("ev_ebitda")
    if ev_ebitda.median is not None:
        implied["ev_ebitda"] = implied_value_per_share(
            "ev_ebitda",
            ev_ebitda.median + ev_ebitda_shift,
            ev_ebitda.company_metric,
            comps.total_debt,
            comps.cash,
            comps.diluted_shares,
        )
    institution = any(m.multiple == "pb" for m in comps.multiples)
    if institution:
        return comps.value_per_share  # no EV multiple in a bank's or insurer's comparables value
    value, _ = combine_implied_values(implied, comps_weights(assumptions))
    return value
