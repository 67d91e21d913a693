"""The ``yfinance`` provider: quotes and annual statements from Yahoo Finance via the ``yfinance`` package.

``yfinance`` (the ``live`` extra) is imported only when a ticker is fetched. Its HTTP layer changes often,
so the provider works at the level of the library's outputs: ``Ticker.info`` (a dict), the annual
``income_stmt``, ``balance_sheet`` and ``cashflow`` tables (pandas DataFrames: one column per fiscal year,
rows such as "Total Revenue") and the ``dividends`` series. These are turned into a JSON *recording*
``{"symbol", "info", "income_stmt": {"2024-09-30": {"Total Revenue": 3.9e11, ...}}, "balance_sheet",
"cashflow", "dividends": {"2024-08-12": 0.25, ...}}``, which is what the cache stores and what tests replay
through an injected ticker factory.

Mapping notes: Yahoo's statement dates are month ends (Apple's 2024-09-28 year shows as 2024-09-30);
EBITDA is recomputed as operating income + D&A; capex is made positive; total debt is current plus
long-term debt, without lease obligations; dividends per share sum the ex-dividend amounts within each
fiscal year; Yahoo's sector (a Morningstar scheme) is mapped to the nearest GICS sector and its industry
is kept as the sub-industry.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from equitune.errors import ConfigError, ProviderUnavailableError
from equitune.market.base import normalise_ticker, unknown_ticker
from equitune.market.cache import Clock, JsonCache, RateLimiter, default_cache_dir, shared_limiter
from equitune.market.models import MONTHS, Company, FiscalYear

log = logging.getLogger(__name__)

TickerFactory = Callable[[str], Any]
Recording = dict[str, Any]
TABLES: tuple[str, ...] = ("income_stmt", "balance_sheet", "cashflow")

# Yahoo (Morningstar) sector -> GICS sector.
YAHOO_SECTORS: dict[str, str] = {
    "Technology": "Information Technology",
    "Healthcare": "Health Care",
    "Financial Services": "Financials",
    "Consumer Cyclical": "Consumer Discretionary",
    "Consumer Defensive": "Consumer Staples",
    "Basic Materials": "Materials",
    "Communication Services": "Communication Services",
    "Industrials": "Industrials",
    "Energy": "Energy",
    "Real Estate": "Real Estate",
    "Utilities": "Utilities",
}
_MONTHS = MONTHS


def _finite(value: Any) -> float | None:
    """A float for real numbers; None for missing values (pandas gives NaN for blank cells)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _iso(key: Any) -> str:
    """A table column or series index (pandas Timestamp, date, or string) as an ISO date."""
    if hasattr(key, "date") and callable(key.date):
        key = key.date()
    if isinstance(key, dt.date):
        return key.isoformat()
    return str(key)[:10]


def table_to_json(table: Any) -> dict[str, dict[str, float]]:
    """A statement table (DataFrame-like, ``to_dict()`` giving ``{column: {row: value}}``) as JSON."""
    if table is None:
        return {}
    data = table.to_dict()
    return {
        _iso(column): {str(row): number for row, value in rows.items() if (number := _finite(value)) is not None}
        for column, rows in data.items()
    }


def series_to_json(series: Any) -> dict[str, float]:
    """A dated series (Series-like, ``to_dict()`` giving ``{date: value}``) as JSON."""
    if series is None:
        return {}
    return {_iso(k): number for k, v in series.to_dict().items() if (number := _finite(v)) is not None}


def _json_safe(value: Any) -> Any:
    # info can hold NaN or nested structures; the cache writes strict JSON.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def record_ticker(ticker: Any, symbol: str, limiter: RateLimiter | None = None) -> Recording:
    """Read a yfinance ``Ticker`` into the JSON recording the provider caches (one request per attribute)."""

    def read(attribute: str) -> Any:
        if limiter is not None:
            limiter.acquire()
        return getattr(ticker, attribute)

    recording: Recording = {"symbol": symbol, "info": _json_safe(dict(read("info") or {}))}
    for name in TABLES:
        recording[name] = table_to_json(read(name))
    recording["dividends"] = series_to_json(read("dividends"))
    return recording


def _row(table: Mapping[str, float], *names: str) -> float | None:
    for name in names:
        if name in table:
            return table[name]
    return None


def _date_from_epoch(value: Any) -> dt.date | None:
    number = _finite(value)
    return dt.datetime.fromtimestamp(number, tz=dt.timezone.utc).date() if number is not None else None


def build_company(ticker: str, recording: Mapping[str, Any], years: int = 4, today: dt.date | None = None) -> Company:
    """The Company record of a yfinance recording (see the module docstring); status from what is present."""
    info: Mapping[str, Any] = recording.get("info") or {}
    income: Mapping[str, Mapping[str, float]] = recording.get("income_stmt") or {}
    balance: Mapping[str, Mapping[str, float]] = recording.get("balance_sheet") or {}
    cashflow: Mapping[str, Mapping[str, float]] = recording.get("cashflow") or {}
    dividends = {dt.date.fromisoformat(k): v for k, v in (recording.get("dividends") or {}).items()}
    notes = [
        "Yahoo Finance via yfinance; period ends are Yahoo's month-end dates.",
        "ebitda = operating income + D&A (not Yahoo's EBITDA); capex positive; "
        "total_debt = current + long-term debt, without lease obligations.",
    ]
    columns = sorted((c for c in income if _row(income[c], "Total Revenue", "Net Income") is not None), reverse=True)[
        :years
    ]
    fiscal_years: list[FiscalYear] = []
    for position, column in enumerate(columns):
        end = dt.date.fromisoformat(column)
        inc, bal, cfl = income[column], balance.get(column, {}), cashflow.get(column, {})
        revenue = _millions(_row(inc, "Total Revenue", "Operating Revenue"))
        gross = _millions(_row(inc, "Gross Profit"))
        cost = _millions(_row(inc, "Cost Of Revenue"))
        if gross is None and revenue is not None and cost is not None:
            gross = revenue - cost
        operating = _millions(_row(inc, "Operating Income"))
        dna_raw = _row(cfl, "Depreciation And Amortization", "Depreciation Amortization Depletion")
        dna = _millions(dna_raw if dna_raw is not None else _row(inc, "Reconciled Depreciation"))
        ocf = _millions(_row(cfl, "Operating Cash Flow"))
        capex_raw = _row(cfl, "Capital Expenditure")
        capex = abs(capex_raw) / 1e6 if capex_raw is not None else None
        debt, debt_note = _total_debt(bal)
        if debt_note and position == 0:
            notes.append(debt_note)
        cash = _millions(_row(bal, "Cash Cash Equivalents And Short Term Investments"))
        if cash is None:
            cash = _millions(_row(bal, "Cash And Cash Equivalents"))
            if cash is not None and position == 0:
                notes.append("cash excludes short-term investments (Yahoo gives only cash and equivalents).")
        previous = dt.date.fromisoformat(columns[position + 1]) if position + 1 < len(columns) else None
        dps = _dividends_per_share(dividends, end, previous, _row(cfl, "Cash Dividends Paid"))
        fiscal_years.append(
            FiscalYear(
                fiscal_year=end.year,
                period_end=end,
                revenue=revenue,
                gross_profit=gross,
                operating_income=operating,
                depreciation_amortization=dna,
                ebitda=operating + dna if operating is not None and dna is not None else None,
                interest_expense=_millions(_row(inc, "Interest Expense")),
                pretax_income=_millions(_row(inc, "Pretax Income")),
                income_tax_expense=_millions(_row(inc, "Tax Provision")),
                net_income=_millions(_row(inc, "Net Income", "Net Income Common Stockholders")),
                eps_diluted=_row(inc, "Diluted EPS"),
                operating_cash_flow=ocf,
                capex=capex,
                free_cash_flow=ocf - capex if ocf is not None and capex is not None else None,
                cash=cash,
                total_debt=debt,
                total_equity=_millions(_row(bal, "Stockholders Equity")),
                total_assets=_millions(_row(bal, "Total Assets")),
                dividends_per_share=dps,
            )
        )
    notes.append("dividends_per_share = sum of ex-dividend amounts within each fiscal year.")
    price = _finite(info.get("currentPrice")) or _finite(info.get("regularMarketPrice"))
    price_date = _date_from_epoch(info.get("regularMarketTime")) if price is not None else None
    shares = _millions(_row(income[columns[0]], "Diluted Average Shares")) if columns else None
    if shares is None and _finite(info.get("sharesOutstanding")) is not None:
        shares = _millions(_finite(info.get("sharesOutstanding")))
        notes.append("diluted_shares = Yahoo's shares outstanding (no diluted average in the statements).")
    yahoo_sector = str(info.get("sector") or "")
    sector = YAHOO_SECTORS.get(yahoo_sector, "Unknown")
    if yahoo_sector:
        notes.append(f"sector mapped from Yahoo's '{yahoo_sector}'; sub_industry is Yahoo's industry, not GICS.")
    fiscal_year_end = _date_from_epoch(info.get("lastFiscalYearEnd"))
    if fiscal_year_end is None and columns:
        fiscal_year_end = dt.date.fromisoformat(columns[0])
    as_of = price_date or today or dt.date.today()
    currency = str(info.get("financialCurrency") or info.get("currency") or "USD")
    if info.get("currency") and info.get("currency") != currency:
        notes.append(f"price is in {info['currency']}, statements in {currency}.")
    labelled = ", ".join(f"FY{fy.fiscal_year}" for fy in fiscal_years) or "no annual statements"
    company = Company(
        ticker=ticker,
        name=str(info.get("longName") or info.get("shortName") or ticker),
        sector=sector,
        sub_industry=str(info.get("industry") or "Unknown"),
        currency=currency,
        fiscal_year_end=_MONTHS[fiscal_year_end.month - 1] if fiscal_year_end else "Unknown",
        cik=None,
        price=price if price and price > 0 else None,
        price_date=price_date,
        diluted_shares=shares if shares and shares > 0 else None,
        market_cap=_millions(_finite(info.get("marketCap"))) or None,
        beta=_finite(info.get("beta")),
        source=f"Yahoo Finance via yfinance: annual statements {labelled}; quote of {as_of.isoformat()}",
        as_of=as_of,
        financials=fiscal_years,
        status="complete",
        notes=notes,
    )
    missing = company.missing_fields()
    if sector == "Unknown":
        missing.append("sector")
    if missing:
        return company.model_copy(
            update={"status": "partial", "notes": [*notes, "Missing: " + ", ".join(missing) + "."]}
        )
    return company


def _millions(value: float | None) -> float | None:
    return None if value is None else value / 1e6


def _total_debt(balance: Mapping[str, float]) -> tuple[float | None, str]:
    current, long_term = _row(balance, "Current Debt"), _row(balance, "Long Term Debt")
    if current is not None or long_term is not None:
        return ((current or 0.0) + (long_term or 0.0)) / 1e6, ""
    total, leases = _row(balance, "Total Debt"), _row(balance, "Capital Lease Obligations")
    if total is not None and leases is not None:
        return (total - leases) / 1e6, "total_debt = Yahoo's Total Debt less Capital Lease Obligations."
    if total is not None:
        return total / 1e6, "total_debt = Yahoo's Total Debt, which may include lease obligations."
    return None, ""


def _dividends_per_share(
    dividends: Mapping[dt.date, float], end: dt.date, previous_end: dt.date | None, paid: float | None
) -> float | None:
    """Ex-dividend amounts in (previous_end, end]; 0 when none and no cash dividends were paid; else None."""
    start = previous_end or end - dt.timedelta(days=365)
    amounts = [v for d, v in dividends.items() if start < d <= end]
    if amounts:
        return round(sum(amounts), 6)
    if not paid:  # no ex-dates and no cash paid (None or 0): the company paid no dividend that year
        return 0.0
    return None  # cash was paid but the dividend history does not cover the year


class YFinanceProvider:
    """Live quotes and statements from Yahoo Finance (see the module docstring), cached on disk.

    The cache lives in ``<cache_dir>/yfinance`` (default ``~/.cache/equitune/yfinance``); recordings are
    kept ``max_age_days`` (1).
    ``ticker_factory`` (default ``yfinance.Ticker``), ``limiter`` and ``clock`` are injectable for tests.
    """

    name = "yfinance"

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        ticker_factory: TickerFactory | None = None,
        max_age_days: float = 1.0,
        max_requests_per_second: int = 2,
        limiter: RateLimiter | None = None,
        years: int = 4,
        clock: Clock = time.time,
    ):
        if max_requests_per_second < 1:
            raise ConfigError("yfinance: max_requests_per_second must be at least 1")
        folder = Path(cache_dir).expanduser() / "yfinance" if cache_dir is not None else None
        self._cache = JsonCache(folder or default_cache_dir("yfinance"), max_age=max_age_days * 86_400, clock=clock)
        self._ticker_factory = ticker_factory
        # Yahoo throttles bursts; a few requests per second per process keeps it answering.
        self._limiter = limiter or shared_limiter("yahoo", max_requests_per_second)
        self._years = years
        self._clock = clock

    def _factory(self) -> TickerFactory:
        if self._ticker_factory is None:
            try:
                import yfinance
            except ImportError:
                raise ProviderUnavailableError(
                    "yfinance: the 'yfinance' package is missing; install the live extra "
                    "(pip install 'equitune[live]') or use the offline 'embedded' provider."
                ) from None
            self._ticker_factory = yfinance.Ticker
        return self._ticker_factory

    def recording(self, ticker: str) -> Recording:
        """The cached or freshly fetched recording of ``ticker`` (raises for unknown tickers)."""
        key = normalise_ticker(ticker)
        cache_key = f"recordings/{key}"
        cached = self._cache.get(cache_key)
        if cached is not None:
            return dict(cached)
        symbol = key.replace(".", "-")  # Yahoo spells share classes with a dash (BRK-B)
        factory = self._factory()
        try:
            recording = record_ticker(factory(symbol), symbol, self._limiter)
        except OSError as exc:  # curl_cffi's and requests' network errors are OSErrors
            raise ProviderUnavailableError(
                f"yfinance: cannot reach Yahoo Finance ({type(exc).__name__}); check the network connection, "
                "or use the offline 'embedded' provider."
            ) from exc
        info = recording["info"]
        if not info.get("quoteType") and not any(recording[name] for name in TABLES):
            raise unknown_ticker(ticker, self.name, self.tickers())
        self._cache.put(cache_key, recording)
        return recording

    def get(self, ticker: str) -> Company:
        """The company's record from Yahoo Finance (cached for ``max_age_days``)."""
        key = normalise_ticker(ticker)
        today = dt.datetime.fromtimestamp(self._clock(), tz=dt.timezone.utc).date()
        return build_company(key, self.recording(key), years=self._years, today=today)

    def tickers(self) -> list[str]:
        """Tickers whose recordings are cached and fresh (no network request is made)."""
        return sorted(
            key.split("/", 1)[1] for key in self._cache.keys("recordings") if self._cache.get(key) is not None
        )
