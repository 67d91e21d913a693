"""The yfinance provider, replaying a recording of yfinance's outputs through an injected ticker factory."""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from equitune.errors import ProviderUnavailableError, UnknownTickerError
from equitune.market import get_provider
from equitune.market.base import MarketDataProvider
from equitune.market.cache import RateLimiter
from equitune.market.providers.embedded import EmbeddedProvider
from equitune.market.providers.yfinance_provider import YFinanceProvider, build_company, record_ticker

RECORDING = json.loads((Path(__file__).parent / "fixtures" / "yfinance" / "AAPL.json").read_text())
DAY = 86_400.0


class RecordedTable:
    """Stands in for a DataFrame or Series: ``to_dict()`` returns what pandas' would."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return self.data


class RecordedTicker:
    """A ``yfinance.Ticker`` replaying a recording; counts attribute reads (one request each in yfinance)."""

    reads: list[str] = []

    def __init__(self, symbol: str, recording: dict[str, Any] = RECORDING):
        self.symbol = symbol
        self._recording = recording

    def __getattr__(self, name: str) -> Any:
        if name not in ("info", "income_stmt", "balance_sheet", "cashflow", "dividends"):
            raise AttributeError(name)
        RecordedTicker.reads.append(name)
        value = self._recording[name]
        return dict(value) if name == "info" else RecordedTable(value)


class Factory:
    """The ticker factory injected into the provider; remembers the symbols asked for."""

    def __init__(self, recording: dict[str, Any] = RECORDING):
        self.recording = recording
        self.symbols: list[str] = []

    def __call__(self, symbol: str) -> RecordedTicker:
        self.symbols.append(symbol)
        return RecordedTicker(symbol, self.recording)


class Clock:
    def __init__(self) -> None:
        self.now = 1_735_700_000.0  # 2025-01-01

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(tmp_path: Path, factory: Factory, clock: Clock | None = None) -> YFinanceProvider:
    clock = clock or Clock()
    limiter = RateLimiter(2, 1.0, clock=clock, sleep=clock.sleep)
    return YFinanceProvider(cache_dir=tmp_path, ticker_factory=factory, limiter=limiter, clock=clock)


def test_apple_record_from_the_recording(tmp_path: Path) -> None:
    apple = make(tmp_path, Factory()).get("AAPL")
    assert apple.status == "complete" and apple.missing_fields() == []
    assert (apple.price, apple.price_date, apple.beta) == (250.42, dt.date(2024, 12, 31), 1.24)
    assert apple.market_cap == pytest.approx(3_785_304.39566)
    assert apple.diluted_shares == pytest.approx(15_408.095)  # latest diluted average shares
    assert (apple.sector, apple.sub_industry) == ("Information Technology", "Consumer Electronics")
    assert (apple.fiscal_year_end, apple.currency, apple.as_of) == ("September", "USD", dt.date(2024, 12, 31))
    assert [fy.fiscal_year for fy in apple.financials] == [2024, 2023]
    assert apple.latest.period_end == dt.date(2024, 9, 30)  # Yahoo's month-end date (10-K: 2024-09-28)
    embedded = EmbeddedProvider().get("AAPL")
    for ours, reported in zip(apple.financials, embedded.financials, strict=True):
        assert ours.model_dump(exclude={"period_end"}) == reported.model_dump(exclude={"period_end"})
    assert apple.latest.capex == 9_447.0  # Yahoo's -9.447e9 made positive
    assert apple.latest.total_debt == 20_879.0 + 85_750.0  # current debt + long-term debt
    assert apple.latest.dividends_per_share == pytest.approx(0.98)  # four ex-dividends in FY2024
    assert apple.financials[1].dividends_per_share == pytest.approx(0.94)
    assert "Yahoo Finance" in apple.source


def test_pandas_tables_give_the_same_record(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")

    class PandasTicker:
        def __init__(self, symbol: str):
            self.info = dict(RECORDING["info"])
            for name in ("income_stmt", "balance_sheet", "cashflow"):
                frame = pd.DataFrame({pd.Timestamp(c): rows for c, rows in RECORDING[name].items()})
                setattr(self, name, frame)  # NaN where a row is absent, as yfinance gives it
            self.dividends = pd.Series(
                {pd.Timestamp(d, tz="America/New_York"): v for d, v in RECORDING["dividends"].items()}
            )

    from_pandas = YFinanceProvider(cache_dir=tmp_path / "pd", ticker_factory=PandasTicker).get("AAPL")
    assert from_pandas == make(tmp_path, Factory()).get("AAPL")
    assert record_ticker(PandasTicker("AAPL"), "AAPL") == RECORDING


def test_cache_hit_and_expiry(tmp_path: Path) -> None:
    factory, clock = Factory(), Clock()
    provider = make(tmp_path, factory, clock)
    first = provider.get("AAPL")
    assert make(tmp_path, factory, clock).get("aapl") == first  # a new provider on the same folder
    assert factory.symbols == ["AAPL"]
    assert provider.tickers() == ["AAPL"]
    clock.now += 1.5 * DAY
    assert provider.tickers() == []
    provider.get("AAPL")
    assert factory.symbols == ["AAPL", "AAPL"]


def test_each_library_call_waits_for_the_rate_limiter(tmp_path: Path) -> None:
    class CountingLimiter(RateLimiter):
        def __init__(self) -> None:
            super().__init__(2, 1.0)
            self.count = 0

        def acquire(self) -> float:
            self.count += 1
            return 0.0

    limiter = CountingLimiter()
    RecordedTicker.reads = []
    provider = YFinanceProvider(cache_dir=tmp_path, ticker_factory=Factory(), limiter=limiter)
    provider.get("AAPL")
    provider.get("AAPL")
    assert limiter.count == len(RecordedTicker.reads) == 5  # info, three statements, dividends; then cached


def test_share_classes_use_yahoo_spelling(tmp_path: Path) -> None:
    factory = Factory()
    company = make(tmp_path, factory).get("brk.b")
    assert factory.symbols == ["BRK-B"] and company.ticker == "BRK.B"


def test_unknown_ticker(tmp_path: Path) -> None:
    empty = {"info": {"trailingPegRatio": None}, "income_stmt": {}, "balance_sheet": {}, "cashflow": {}}
    with pytest.raises(UnknownTickerError) as caught:
        make(tmp_path, Factory({**empty, "dividends": {}})).get("NOPE")
    assert caught.value.provider == "yfinance"


def test_no_network_is_one_clear_line(tmp_path: Path) -> None:
    class OfflineTicker:
        def __init__(self, symbol: str):
            pass

        @property
        def info(self) -> dict[str, Any]:
            # What curl_cffi raises inside yfinance when DNS fails; its exceptions are OSErrors.
            raise ConnectionError("Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com")

    with pytest.raises(ProviderUnavailableError) as caught:
        YFinanceProvider(cache_dir=tmp_path, ticker_factory=OfflineTicker).get("AAPL")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("yfinance: cannot reach Yahoo Finance")
    assert "'embedded' provider" in message


def test_missing_package_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yfinance", None)  # makes `import yfinance` fail
    with pytest.raises(ProviderUnavailableError, match=r"pip install 'equitune\[live\]'"):
        YFinanceProvider(cache_dir=tmp_path).get("AAPL")


def test_partial_record_names_what_is_missing(tmp_path: Path) -> None:
    recording = copy.deepcopy(RECORDING)
    del recording["info"]["beta"]
    del recording["balance_sheet"]["2023-09-30"]["Stockholders Equity"]
    apple = make(tmp_path, Factory(recording)).get("AAPL")
    assert apple.status == "partial"
    assert apple.missing_fields() == ["beta", "FY2023.total_equity"]
    assert apple.notes[-1] == "Missing: beta, FY2023.total_equity."


def test_debt_and_cash_fallbacks() -> None:
    # Invented balance-sheet rows: no current/long-term split, only Yahoo's totals.
    recording = copy.deepcopy(RECORDING)
    for column in recording["balance_sheet"].values():
        del (
            column["Current Debt"],
            column["Long Term Debt"],
            column["Cash Cash Equivalents And Short Term Investments"],
        )
        column["Total Debt"], column["Capital Lease Obligations"] = 130e9, 10e9
    company = build_company("AAPL", recording)
    assert company.latest.total_debt == 120_000.0
    assert company.latest.cash == 29_943.0
    assert any("less Capital Lease Obligations" in n for n in company.notes)
    assert any("cash excludes short-term investments" in n for n in company.notes)


def test_no_dividends_means_zero_when_none_were_paid() -> None:
    recording = copy.deepcopy(RECORDING)
    recording["dividends"] = {}
    for column in recording["cashflow"].values():
        del column["Cash Dividends Paid"]
    assert build_company("AAPL", recording).latest.dividends_per_share == 0.0
    recording["cashflow"]["2024-09-30"]["Cash Dividends Paid"] = -1e9  # paid, but no history: unknown
    assert build_company("AAPL", recording).latest.dividends_per_share is None


def test_registry_builds_the_yfinance_provider(tmp_path: Path) -> None:
    provider = get_provider("yfinance", cache_dir=tmp_path)
    assert isinstance(provider, MarketDataProvider)
    assert provider.name == "yfinance" and provider.tickers() == []
