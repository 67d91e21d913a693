"""The ``edgar`` provider: fundamentals from SEC EDGAR's XBRL "company facts" API.

Two endpoints, both JSON: ``https://www.sec.gov/files/company_tickers.json`` maps tickers to CIKs, and
``https://data.sec.gov/api/xbrl/companyfacts/CIK##########.json`` holds every fact a company has tagged in
its filings. Each fact is ``{"start", "end", "val", "accn", "fy", "fp", "form", "filed", "frame"}`` under
``facts -> us-gaap -> Concept -> units -> USD | USD/shares | shares``.

A fiscal year is a period of 350-380 days (52/53-week years included) reported in a Form 10-K with
``fp == "FY"``; balance-sheet items are the instants at its end. Where several 10-Ks report the same period
(the original and later comparatives), the latest filing wins, so restated figures replace the first print.
``fy`` in company facts is the fiscal year *of the filing*, not of the period, so a period is labelled with
the ``fy`` of the 10-K in which it is the newest period.

EDGAR has no share price, beta or GICS classification: without a ``price_source`` those stay empty
(sector "Unknown") and the record is ``partial``. With one (any provider, e.g. ``"csv"`` or
``"embedded"``), price, beta and sector come from it and market cap = price × diluted shares.

SEC asks every client to send a User-Agent naming the requester with a contact e-mail and to make at most
10 requests per second; the provider does both (configure ``user_agent``), and caches responses on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from equitune import __version__
from equitune.errors import ConfigError, DataError, ProviderUnavailableError, UnknownTickerError
from equitune.market.base import MarketDataProvider, normalise_ticker, unknown_ticker
from equitune.market.cache import Clock, JsonCache, RateLimiter, default_cache_dir, shared_limiter
from equitune.market.models import MONTHS, Company, FiscalYear

log = logging.getLogger(__name__)

TICKERS_URL = "https://www.sec.gov/files/company_tickers.json"
FACTS_URL = "https://data.sec.gov/api/xbrl/companyfacts/CIK{cik:010d}.json"
DEFAULT_USER_AGENT = f"equitune/{__version__} (equity research; contact not configured)"
SEC_MAX_REQUESTS_PER_SECOND = 10

_MONTHS = MONTHS

# us-gaap concepts per field, first match wins per period (companies switch tags over the years).
DURATION_CONCEPTS: dict[str, tuple[str, ...]] = {
    "revenue": (
        "RevenueFromContractWithCustomerExcludingAssessedTax",
        "Revenues",
        "SalesRevenueNet",
        "RevenueFromContractWithCustomerIncludingAssessedTax",
    ),
    "cost_of_revenue": ("CostOfRevenue", "CostOfGoodsAndServicesSold", "CostOfGoodsSold"),
    "gross_profit": ("GrossProfit",),
    "operating_income": ("OperatingIncomeLoss",),
    "depreciation_amortization": (
        "DepreciationDepletionAndAmortization",
        "DepreciationAmortizationAndAccretionNet",
        "DepreciationAndAmortization",
    ),
    "interest_expense": ("InterestExpense", "InterestExpenseNonoperating", "InterestExpenseDebt"),
    "pretax_income": (
        "IncomeLossFromContinuingOperationsBeforeIncomeTaxesExtraordinaryItemsNoncontrollingInterest",
        "IncomeLossFromContinuingOperationsBeforeIncomeTaxesMinorityInterestAndIncomeLossFromEquityMethodInvestments",
    ),
    "income_tax_expense": ("IncomeTaxExpenseBenefit",),
    "net_income": ("NetIncomeLoss",),
    "operating_cash_flow": (
        "NetCashProvidedByUsedInOperatingActivities",
        "NetCashProvidedByUsedInOperatingActivitiesContinuingOperations",
    ),
    "capex": ("PaymentsToAcquirePropertyPlantAndEquipment", "PaymentsToAcquireProductiveAssets"),
}
PER_SHARE_CONCEPTS: dict[str, tuple[str, ...]] = {
    "eps_diluted": ("EarningsPerShareDiluted", "EarningsPerShareBasicAndDiluted"),
    "dividends_per_share": ("CommonStockDividendsPerShareDeclared", "CommonStockDividendsPerShareCashPaid"),
}
SHARE_CONCEPTS: dict[str, tuple[str, ...]] = {
    "diluted_shares": ("WeightedAverageNumberOfDilutedSharesOutstanding",),
}
INSTANT_CONCEPTS: dict[str, tuple[str, ...]] = {
    "cash": ("CashAndCashEquivalentsAtCarryingValue",),
    "short_term_investments": (
        "MarketableSecuritiesCurrent",
        "ShortTermInvestments",
        "AvailableForSaleSecuritiesDebtSecuritiesCurrent",
    ),
    "commercial_paper": ("CommercialPaper",),
    "short_term_borrowings": ("ShortTermBorrowings",),
    "long_term_debt_current": ("LongTermDebtCurrent",),
    "long_term_debt_noncurrent": ("LongTermDebtNoncurrent",),
    "long_term_debt": ("LongTermDebt",),
    "total_equity": ("StockholdersEquity",),
    "total_assets": ("Assets",),
}
_ALL_CONCEPTS = frozenset(
    c
    for table in (DURATION_CONCEPTS, PER_SHARE_CONCEPTS, SHARE_CONCEPTS, INSTANT_CONCEPTS)
    for chain in table.values()
    for c in chain
)


@dataclass(frozen=True)
class HttpResponse:
    """What a fetch returns: the HTTP status and the body's bytes."""

    status: int
    body: bytes


Fetch = Callable[[str, Mapping[str, str]], HttpResponse]


def requests_fetch(timeout: float = 30.0) -> Fetch:
    """A ``fetch(url, headers)`` over a ``requests`` session; network failures raise ``OSError``s."""
    try:
        import requests
    except ImportError:
        raise ProviderUnavailableError(
            "edgar: the 'requests' package is missing; install the live extra (pip install 'equitune[live]') "
            "or use the offline 'embedded' provider."
        ) from None
    session = requests.Session()

    def fetch(url: str, headers: Mapping[str, str]) -> HttpResponse:
        response = session.get(url, headers=dict(headers), timeout=timeout)
        return HttpResponse(response.status_code, response.content)

    return fetch


@dataclass(frozen=True)
class _Fact:
    value: float
    end: dt.date
    start: dt.date | None
    fy: int | None
    accn: str
    filed: str
    concept: str


class CompanyFacts:
    """The annual (10-K, full-year) facts of a companyfacts document, by concept, unit and period end."""

    def __init__(self, document: Mapping[str, Any]):
        self.cik = int(document.get("cik") or 0)
        self.entity_name = str(document.get("entityName") or "")
        self._facts: dict[tuple[str, str], dict[dt.date, _Fact]] = {}
        # For each 10-K: its fiscal-year label and the newest period end it reports.
        self._filings: dict[str, tuple[int | None, dt.date, str]] = {}
        for concept, body in (document.get("facts", {}).get("us-gaap") or {}).items():
            for unit, entries in (body.get("units") or {}).items():
                self._index(concept, unit, entries)

    def _index(self, concept: str, unit: str, entries: list[dict[str, Any]]) -> None:
        by_end = self._facts.setdefault((concept, unit), {})
        for entry in entries:
            if entry.get("form") != "10-K" or entry.get("fp") != "FY":
                continue
            try:
                end = dt.date.fromisoformat(entry["end"])
                start = dt.date.fromisoformat(entry["start"]) if entry.get("start") else None
                fact = _Fact(float(entry["val"]), end, start, entry.get("fy"), entry["accn"], entry["filed"], concept)
            except (KeyError, TypeError, ValueError):
                continue  # a fact without a usable date or value cannot be placed in a period
            if start is not None:
                if not 350 <= (end - start).days <= 380:
                    continue  # quarterly or cumulative figures inside a 10-K
                fy, newest, filed = self._filings.get(fact.accn, (fact.fy, end, fact.filed))
                self._filings[fact.accn] = (fy, max(newest, end), filed)
            current = by_end.get(end)
            if current is None or fact.filed > current.filed:
                by_end[end] = fact

    def value(self, concepts: tuple[str, ...], unit: str, end: dt.date, instant: bool = False) -> _Fact | None:
        """The first of ``concepts`` reported for the fiscal year (``instant``: the date) ending ``end``."""
        for concept in concepts:
            fact = self._facts.get((concept, unit), {}).get(end)
            if fact is not None and (fact.start is None) == instant:
                return fact
        return None

    def period_ends(self) -> list[dt.date]:
        """Ends of the fiscal years with revenue or net income, newest first."""
        ends: set[dt.date] = set()
        for concept in (*DURATION_CONCEPTS["revenue"], *DURATION_CONCEPTS["net_income"]):
            ends.update(end for end, f in self._facts.get((concept, "USD"), {}).items() if f.start is not None)
        return sorted(ends, reverse=True)

    def labels(self, ends: list[dt.date]) -> dict[dt.date, int]:
        """Fiscal-year labels: the ``fy`` of the 10-K in which the period is the newest one.

        A period never seen as the newest (only as a comparative) is labelled by its end year shifted by
        the offset of the newer labelled period (0 for most companies, -1 for years ending early January)."""
        own: dict[dt.date, tuple[str, int]] = {}
        for fy, newest, filed in self._filings.values():
            if fy is not None and (newest not in own or filed < own[newest][0]):
                own[newest] = (filed, int(fy))
        labels: dict[dt.date, int] = {}
        offset = 0
        for end in sorted(ends, reverse=True):
            if end in own and abs(own[end][1] - end.year) <= 1:
                offset = own[end][1] - end.year
            label = end.year + offset
            if label in labels.values():
                label = end.year  # never two periods with one label
            if label not in labels.values():
                labels[end] = label
        return labels


def fiscal_year_end_month(end: dt.date) -> str:
    """The month a fiscal year ending on ``end`` is said to end in; a 52/53-week year ending in a month's
    first week (e.g. 2023-01-01) belongs to the month before."""
    if end.day <= 7:
        end = end.replace(day=1) - dt.timedelta(days=1)
    return _MONTHS[end.month - 1]


def _millions(fact: _Fact | None) -> float | None:
    return None if fact is None else fact.value / 1e6


def build_company(ticker: str, document: Mapping[str, Any], name: str | None = None, years: int = 3) -> Company:
    """The Company record of a companyfacts document: up to ``years`` fiscal years, no market data.

    Sector and sub-industry are "Unknown" (EDGAR has no GICS classification); ``EdgarProvider`` adds
    market data and sets the status."""
    facts = CompanyFacts(document)
    ends = facts.period_ends()[:years]
    if not ends:
        raise DataError(f"edgar: no annual (Form 10-K) revenue or net income for {ticker} in SEC company facts")
    labels = facts.labels(ends)
    notes: dict[str, list[int]] = {}  # note -> fiscal years it applies to
    filings: dict[str, str] = {}
    fiscal_years: list[FiscalYear] = []
    shares: float | None = None
    for end in ends:
        if end not in labels:
            continue
        label = labels[end]

        def duration(field: str, end: dt.date = end) -> _Fact | None:
            return facts.value(DURATION_CONCEPTS[field], "USD", end)

        def instant(field: str, end: dt.date = end) -> _Fact | None:
            return facts.value(INSTANT_CONCEPTS[field], "USD", end, instant=True)

        def note(text: str, label: int = label) -> None:
            notes.setdefault(text, []).append(label)

        revenue = duration("revenue")
        anchor = revenue or duration("net_income")
        if anchor is not None:
            filings[anchor.accn] = anchor.filed
        gross = _millions(duration("gross_profit"))
        cost = duration("cost_of_revenue")
        if gross is None and revenue is not None and cost is not None:
            gross = (revenue.value - cost.value) / 1e6
            note(f"gross_profit derived: revenue − {cost.concept}")
        operating = _millions(duration("operating_income"))
        dna = _millions(duration("depreciation_amortization"))
        ocf = _millions(duration("operating_cash_flow"))
        capex = _millions(duration("capex"))
        cash_fact, investments = instant("cash"), instant("short_term_investments")
        cash = None
        if cash_fact is not None:
            cash = (cash_fact.value + (investments.value if investments else 0.0)) / 1e6
            if investments is not None:
                note(f"cash = {cash_fact.concept} + {investments.concept}")
        debt, debt_parts = _total_debt({k: instant(k) for k in INSTANT_CONCEPTS})
        if debt_parts:
            note(f"total_debt = {' + '.join(debt_parts)}")
        eps = facts.value(PER_SHARE_CONCEPTS["eps_diluted"], "USD/shares", end)
        dps = facts.value(PER_SHARE_CONCEPTS["dividends_per_share"], "USD/shares", end)
        if shares is None:
            shares = _millions(facts.value(SHARE_CONCEPTS["diluted_shares"], "shares", end))
        fiscal_years.append(
            FiscalYear(
                fiscal_year=label,
                period_end=end,
                revenue=_millions(revenue),
                gross_profit=gross,
                operating_income=operating,
                depreciation_amortization=dna,
                ebitda=operating + dna if operating is not None and dna is not None else None,
                interest_expense=_millions(duration("interest_expense")),
                pretax_income=_millions(duration("pretax_income")),
                income_tax_expense=_millions(duration("income_tax_expense")),
                net_income=_millions(duration("net_income")),
                eps_diluted=eps.value if eps else None,
                operating_cash_flow=ocf,
                capex=capex,
                free_cash_flow=ocf - capex if ocf is not None and capex is not None else None,
                cash=cash,
                total_debt=debt,
                total_equity=_millions(instant("total_equity")),
                total_assets=_millions(instant("total_assets")),
                dividends_per_share=dps.value if dps else None,
            )
        )
    notes_out = [
        "ebitda = operating income + depreciation and amortisation; free_cash_flow = operating cash flow − capex.",
        *(f"{text} (FY{', FY'.join(str(y) for y in years_)})." for text, years_ in notes.items()),
    ]
    labelled = ", ".join(f"FY{fy.fiscal_year}" for fy in fiscal_years)
    used = ", ".join(
        f"{accn} filed {filed}" for accn, filed in sorted(filings.items(), key=lambda kv: kv[1], reverse=True)
    )
    company = Company(
        ticker=ticker,
        name=name or facts.entity_name or ticker,
        sector="Unknown",
        sub_industry="Unknown",
        currency="USD",  # company facts money is tagged in USD (other units are not read)
        fiscal_year_end=fiscal_year_end_month(ends[0]),
        cik=facts.cik or None,
        price=None,
        price_date=None,
        market_cap=None,
        beta=None,
        diluted_shares=shares if shares and shares > 0 else None,
        source=f"SEC EDGAR XBRL company facts, Form 10-K ({labelled}; accessions {used})",
        as_of=ends[0],
        financials=fiscal_years,
        status="complete",
        notes=notes_out,
    )
    return company


def _total_debt(parts: Mapping[str, _Fact | None]) -> tuple[float | None, list[str]]:
    """Short- plus long-term debt from its tagged parts (no lease liabilities), and the parts' concepts."""
    used = [parts["commercial_paper"], parts["short_term_borrowings"]]
    if parts["long_term_debt_noncurrent"] is not None:
        used += [parts["long_term_debt_current"], parts["long_term_debt_noncurrent"]]
    else:
        used.append(parts["long_term_debt"])  # LongTermDebt includes the current portion
    found = [fact for fact in used if fact is not None]
    if not found:
        return None, []
    return sum(f.value for f in found) / 1e6, [f.concept for f in found]


class EdgarProvider:
    """Live fundamentals from SEC EDGAR (see the module docstring), cached on disk and rate limited.

    The cache lives in ``<cache_dir>/edgar`` (default ``~/.cache/equitune/edgar``); company facts are kept
    ``max_age_days`` (1) and
    the ticker list ``tickers_max_age_days`` (7). ``user_agent`` should name you and an e-mail, as SEC
    requires. ``fetch`` (``(url, headers) -> HttpResponse``), ``limiter`` and ``clock`` are injectable for
    tests. ``price_source`` (a provider or a provider name) supplies price, beta and sector.
    """

    name = "edgar"

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        user_agent: str | None = None,
        *,
        fetch: Fetch | None = None,
        max_age_days: float = 1.0,
        tickers_max_age_days: float = 7.0,
        max_requests_per_second: int = SEC_MAX_REQUESTS_PER_SECOND,
        limiter: RateLimiter | None = None,
        price_source: MarketDataProvider | str | None = None,
        years: int = 3,
        clock: Clock = time.time,
        tickers_url: str = TICKERS_URL,
        facts_url: str = FACTS_URL,
    ):
        if not 1 <= max_requests_per_second <= SEC_MAX_REQUESTS_PER_SECOND:
            raise ConfigError(
                f"edgar: max_requests_per_second must be 1..{SEC_MAX_REQUESTS_PER_SECOND} (SEC's fair-access limit)"
            )
        if years < 1:
            raise ConfigError(f"edgar: years must be at least 1, got {years}")
        folder = Path(cache_dir).expanduser() / "edgar" if cache_dir is not None else default_cache_dir("edgar")
        self.user_agent = (user_agent or "").strip() or DEFAULT_USER_AGENT
        if "@" not in self.user_agent:
            log.warning("SEC EDGAR asks for a User-Agent with a contact e-mail; set market.user_agent")
        self._facts_cache = JsonCache(folder, max_age=max_age_days * 86_400, clock=clock)
        self._tickers_cache = JsonCache(folder, max_age=tickers_max_age_days * 86_400, clock=clock)
        self._fetch = fetch
        self._limiter = limiter or shared_limiter("sec.gov", max_requests_per_second)
        self._price_source = price_source
        self._years = years
        self._tickers_url = tickers_url
        self._facts_url = facts_url

    @property
    def headers(self) -> dict[str, str]:
        """Headers sent with every request (SEC's fair-access policy asks for a descriptive User-Agent)."""
        return {"User-Agent": self.user_agent, "Accept-Encoding": "gzip, deflate"}

    def _get_json(self, url: str) -> Any | None:
        """GET ``url`` politely and parse its JSON; ``None`` for HTTP 404; one-line errors otherwise."""
        host = urlparse(url).netloc
        if self._fetch is None:
            self._fetch = requests_fetch()
        self._limiter.acquire()
        try:
            response = self._fetch(url, self.headers)
        except OSError as exc:  # requests' and urllib's network errors are OSErrors
            raise ProviderUnavailableError(
                f"edgar: cannot reach {host} ({type(exc).__name__}); check the network connection, "
                "or use the offline 'embedded' provider."
            ) from exc
        if response.status == 404:
            return None
        if response.status == 403:
            raise ProviderUnavailableError(
                f"edgar: {host} refused the request (HTTP 403); SEC requires a User-Agent with your name and "
                "e-mail (set market.user_agent), or use the offline 'embedded' provider."
            )
        if response.status == 429:
            raise ProviderUnavailableError(
                f"edgar: {host} rate limit reached (HTTP 429); wait about ten minutes, "
                "or use the offline 'embedded' provider."
            )
        if response.status != 200:
            raise ProviderUnavailableError(
                f"edgar: {host} answered HTTP {response.status}; try again later, "
                "or use the offline 'embedded' provider."
            )
        try:
            return json.loads(response.body)
        except ValueError:
            raise ProviderUnavailableError(f"edgar: {host} returned a response that is not JSON ({url})") from None

    def ticker_map(self) -> dict[str, tuple[int, str]]:
        """Every ticker SEC knows, normalised (BRK.B), with its CIK and company name; cached."""
        raw = self._tickers_cache.get("company_tickers")
        if raw is None:
            raw = self._get_json(self._tickers_url)
            if not isinstance(raw, dict) or not raw:
                raise ProviderUnavailableError(f"edgar: unexpected ticker list from {self._tickers_url}")
            self._tickers_cache.put("company_tickers", raw)
        return _parse_ticker_map(raw)

    def company_facts(self, cik: int) -> dict[str, Any] | None:
        """The company-facts document of ``cik`` (only the concepts the provider reads); cached."""
        key = f"companyfacts/CIK{cik:010d}"
        document = self._facts_cache.get(key)
        if document is None:
            document = self._get_json(self._facts_url.format(cik=cik))
            if document is None:
                return None
            document = _trim(document)
            self._facts_cache.put(key, document)
        return dict(document)

    def get(self, ticker: str) -> Company:
        """The company's fiscal years from its 10-K filings, with market data from ``price_source`` if set."""
        key = normalise_ticker(ticker)
        known = self.ticker_map()
        if key not in known:
            raise unknown_ticker(ticker, self.name, known)
        cik, title = known[key]
        document = self.company_facts(cik)
        if document is None:
            raise DataError(f"edgar: SEC has no XBRL company facts for {key} (CIK {cik:010d})")
        company = build_company(key, document, name=title, years=self._years)
        return self._finish(company)

    def _finish(self, company: Company) -> Company:
        """Add market data from the price source and mark the record complete or partial."""
        update: dict[str, Any] = {}
        notes = list(company.notes)
        source = self._resolve_price_source()
        quote: Company | None = None
        if source is not None:
            try:
                quote = source.get(company.ticker)
            except UnknownTickerError:
                notes.append(f"price source '{source.name}' does not know {company.ticker}.")
        if source is not None and quote is not None and quote.price is not None:
            update.update(price=quote.price, price_date=quote.price_date, beta=quote.beta, as_of=quote.as_of)
            update.update(sector=quote.sector, sub_industry=quote.sub_industry)
            notes.append(f"price, beta and sector from the '{source.name}' provider ({quote.source}).")
            if company.diluted_shares is not None:
                update["market_cap"] = quote.price * company.diluted_shares
                notes.append("market_cap = price × diluted weighted-average shares of the latest 10-K.")
        else:
            notes.append("EDGAR has no share price, beta or GICS sector; give a price_source to add them.")
        updated = company.model_copy(update={**update, "notes": notes})
        missing = updated.missing_fields()
        if updated.sector == "Unknown":
            missing.append("sector")
        if missing:
            notes.append("Missing: " + ", ".join(missing) + ".")
            return updated.model_copy(update={"status": "partial", "notes": notes})
        return updated

    def _resolve_price_source(self) -> MarketDataProvider | None:
        if isinstance(self._price_source, str):
            from equitune.market.base import get_provider

            self._price_source = get_provider(self._price_source)
        return self._price_source

    def tickers(self) -> list[str]:
        """Tickers whose company facts are cached and fresh (no network request is made)."""
        raw = self._tickers_cache.get("company_tickers")
        if raw is None:
            return []
        by_cik: dict[int, list[str]] = {}
        for ticker, (cik, _) in _parse_ticker_map(raw).items():
            by_cik.setdefault(cik, []).append(ticker)
        found: list[str] = []
        for key in self._facts_cache.keys("companyfacts"):
            cik = int(key.rsplit("CIK", 1)[-1])
            if self._facts_cache.get(key) is not None:
                found.extend(by_cik.get(cik, []))
        return sorted(found)


def _parse_ticker_map(raw: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    """``{"0": {"cik_str": 320193, "ticker": "AAPL", "title": ...}}`` -> ``{"AAPL": (320193, title)}``."""
    out: dict[str, tuple[int, str]] = {}
    for row in raw.values():
        try:
            out.setdefault(normalise_ticker(str(row["ticker"])), (int(row["cik_str"]), str(row["title"])))
        except (KeyError, TypeError, ValueError):
            continue  # one malformed row should not hide every other company
    return out


def _trim(document: Mapping[str, Any]) -> dict[str, Any]:
    """Only the us-gaap concepts the provider reads, so the cache stays small (a full file is megabytes)."""
    us_gaap = document.get("facts", {}).get("us-gaap") or {}
    return {
        "cik": document.get("cik"),
        "entityName": document.get("entityName"),
        "facts": {"us-gaap": {k: v for k, v in us_gaap.items() if k in _ALL_CONCEPTS}},
    }
