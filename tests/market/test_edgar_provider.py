"""The edgar provider and the shared cache/rate limiter, replaying recorded SEC responses (no network)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from equitune.errors import DataError, ProviderUnavailableError, UnknownTickerError
from equitune.market import get_provider
from equitune.market.base import MarketDataProvider
from equitune.market.cache import JsonCache, RateLimiter
from equitune.market.providers.edgar_provider import (
    DEFAULT_USER_AGENT,
    EdgarProvider,
    HttpResponse,
    build_company,
    fiscal_year_end_month,
)
from equitune.market.providers.embedded import EmbeddedProvider

FIXTURES = Path(__file__).parent / "fixtures" / "edgar"
APPLE_FACTS = json.loads((FIXTURES / "CIK0000320193.json").read_text())
UA = "equitune tests tests@example.com"
DAY = 86_400.0


class FakeClock:
    """A clock the test moves by hand; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: float = 1_000_000.0):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class RecordedSec:
    """Serves the recorded SEC responses by URL and records every request (url, headers)."""

    def __init__(self, facts: dict[str, Any] | None = None, status: int = 200):
        self.facts = facts
        self.status = status
        self.calls: list[tuple[str, dict[str, str]]] = []

    def __call__(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        self.calls.append((url, dict(headers)))
        if self.status != 200:
            return HttpResponse(self.status, b"")
        if url == "https://www.sec.gov/files/company_tickers.json":
            return HttpResponse(200, (FIXTURES / "company_tickers.json").read_bytes())
        if url == "https://data.sec.gov/api/xbrl/companyfacts/CIK0000320193.json":
            body = json.dumps(self.facts).encode() if self.facts is not None else None
            return HttpResponse(200, body or (FIXTURES / "CIK0000320193.json").read_bytes())
        return HttpResponse(404, b"<html>Not Found</html>")

    def urls(self) -> list[str]:
        return [url for url, _ in self.calls]


def make(tmp_path: Path, sec: RecordedSec, clock: FakeClock | None = None, **options: Any) -> EdgarProvider:
    clock = clock or FakeClock()
    limiter = RateLimiter(10, 1.0, clock=clock, sleep=clock.sleep)
    return EdgarProvider(cache_dir=tmp_path, user_agent=UA, fetch=sec, limiter=limiter, clock=clock, **options)


# --- the record ------------------------------------------------------------------------------------------


def test_apple_fiscal_years_equal_the_10k_figures(tmp_path: Path) -> None:
    apple = make(tmp_path, RecordedSec()).get("aapl")
    assert [fy.fiscal_year for fy in apple.financials] == [2024, 2023, 2022]
    embedded = EmbeddedProvider().get("AAPL")
    # FY2024 and FY2023 match the embedded snapshot, which was typed from the 10-Ks, field by field.
    assert apple.financials[0] == embedded.financials[0]
    assert apple.financials[1] == embedded.financials[1]
    fy2024 = apple.latest
    assert (fy2024.revenue, fy2024.net_income, fy2024.eps_diluted) == (391_035.0, 93_736.0, 6.08)
    assert fy2024.cash == 29_943.0 + 35_228.0  # cash and equivalents + current marketable securities
    assert fy2024.total_debt == 9_967.0 + 10_912.0 + 85_750.0  # commercial paper + term debt
    assert fy2024.interest_expense is None  # not disclosed in the FY2024 10-K
    # FY2022 is only a comparative in the recorded filings, yet labelled and filled from them.
    fy2022 = apple.financials[2]
    assert (fy2022.period_end, fy2022.revenue, fy2022.total_equity) == (
        dt.date(2022, 9, 24),
        394_328.0,
        50_672.0,
    )
    assert (apple.cik, apple.name, apple.fiscal_year_end) == (320193, "Apple Inc.", "September")
    assert apple.diluted_shares == pytest.approx(15_408.095)
    assert "0000320193-24-000123" in apple.source and "10-K" in apple.source
    assert apple.as_of == dt.date(2024, 9, 28)


def test_without_price_source_the_record_is_partial(tmp_path: Path) -> None:
    apple = make(tmp_path, RecordedSec()).get("AAPL")
    assert apple.status == "partial"
    assert apple.missing_fields() == ["price", "market_cap", "beta"]
    assert (apple.price, apple.beta, apple.sector) == (None, None, "Unknown")
    assert apple.notes[-1] == "Missing: price, market_cap, beta, sector."
    assert any("EDGAR has no share price" in n for n in apple.notes)


def test_price_source_completes_the_record(tmp_path: Path) -> None:
    apple = make(tmp_path, RecordedSec(), price_source=EmbeddedProvider()).get("AAPL")
    assert apple.status == "complete"
    assert (apple.price, apple.beta, apple.sector) == (250.42, 1.24, "Information Technology")
    assert apple.market_cap == pytest.approx(250.42 * 15_408.095)


def test_missing_concept_makes_a_partial_record(tmp_path: Path) -> None:
    facts = copy.deepcopy(APPLE_FACTS)
    del facts["facts"]["us-gaap"]["GrossProfit"]
    del facts["facts"]["us-gaap"]["CostOfGoodsAndServicesSold"]
    apple = make(tmp_path, RecordedSec(facts=facts), price_source=EmbeddedProvider()).get("AAPL")
    assert apple.status == "partial"
    assert apple.missing_fields() == ["FY2024.gross_profit", "FY2023.gross_profit"]
    assert apple.notes[-1] == "Missing: FY2024.gross_profit, FY2023.gross_profit."


def test_gross_profit_derived_from_cost_of_revenue(tmp_path: Path) -> None:
    facts = copy.deepcopy(APPLE_FACTS)
    del facts["facts"]["us-gaap"]["GrossProfit"]
    apple = make(tmp_path, RecordedSec(facts=facts)).get("AAPL")
    assert apple.latest.gross_profit == 180_683.0
    assert any(n.startswith("gross_profit derived: revenue − CostOfGoodsAndServicesSold") for n in apple.notes)


def test_latest_filing_wins_and_quarters_are_ignored() -> None:
    # Invented figures: a 10-K for FY2021 and a later 10-K restating it; a 10-Q and a quarter inside a 10-K.
    def fact(start: str, end: str, val: float, accn: str, fy: int, filed: str, form: str = "10-K") -> dict[str, Any]:
        fp = "FY" if form == "10-K" else "Q2"
        return {
            "start": start,
            "end": end,
            "val": val,
            "accn": accn,
            "fy": fy,
            "fp": fp,
            "form": form,
            "filed": filed,
        }

    revenue = [
        fact("2021-01-01", "2021-12-31", 100e6, "a-21", 2021, "2022-02-01"),
        fact("2021-01-01", "2021-12-31", 90e6, "a-22", 2022, "2023-02-01"),  # restated in the next 10-K
        fact("2022-01-01", "2022-12-31", 120e6, "a-22", 2022, "2023-02-01"),
        fact("2022-10-01", "2022-12-31", 40e6, "a-22", 2022, "2023-02-01"),  # a quarter inside the 10-K
        fact("2023-01-01", "2023-06-30", 70e6, "q-23", 2023, "2023-08-01", form="10-Q"),
    ]
    document = {
        "cik": 1,
        "entityName": "Example Corp",
        "facts": {"us-gaap": {"Revenues": {"units": {"USD": revenue}}}},
    }
    company = build_company("EXMP", document)
    assert [(fy.fiscal_year, fy.revenue) for fy in company.financials] == [(2022, 120.0), (2021, 90.0)]
    assert company.fiscal_year_end == "December"


def test_fiscal_year_end_month_of_52_53_week_years() -> None:
    assert fiscal_year_end_month(dt.date(2024, 9, 28)) == "September"
    assert fiscal_year_end_month(dt.date(2023, 1, 1)) == "December"
    assert fiscal_year_end_month(dt.date(2025, 1, 31)) == "January"


# --- transport, politeness, errors ----------------------------------------------------------------------


def test_requests_carry_the_user_agent(tmp_path: Path) -> None:
    sec = RecordedSec()
    make(tmp_path, sec).get("AAPL")
    assert sec.urls() == [
        "https://www.sec.gov/files/company_tickers.json",
        "https://data.sec.gov/api/xbrl/companyfacts/CIK0000320193.json",
    ]
    assert all(headers["User-Agent"] == UA for _, headers in sec.calls)
    assert EdgarProvider(cache_dir=tmp_path).user_agent == DEFAULT_USER_AGENT
    assert DEFAULT_USER_AGENT.startswith("equitune/")


def test_unknown_ticker_suggests_close_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownTickerError) as caught:
        make(tmp_path, RecordedSec()).get("AAPLE")
    assert caught.value.provider == "edgar"
    assert "AAPL" in caught.value.suggestions


def test_share_class_spelling_and_missing_facts(tmp_path: Path) -> None:
    sec = RecordedSec()
    with pytest.raises(DataError, match=r"no XBRL company facts for BRK\.B \(CIK 0001067983\)"):
        make(tmp_path, sec).get("brk.b")  # SEC lists it as BRK-B
    assert sec.urls()[-1].endswith("CIK0001067983.json")


@pytest.mark.parametrize(
    "failure", [OSError("network is unreachable"), ConnectionError("connection refused"), TimeoutError()]
)
def test_no_network_is_one_clear_line(tmp_path: Path, failure: Exception) -> None:
    def offline(url: str, headers: Mapping[str, str]) -> HttpResponse:
        raise failure

    with pytest.raises(ProviderUnavailableError) as caught:
        EdgarProvider(cache_dir=tmp_path, user_agent=UA, fetch=offline).get("AAPL")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("edgar: cannot reach www.sec.gov")
    assert "'embedded' provider" in message


def test_no_network_through_the_real_transport(tmp_path: Path) -> None:
    pytest.importorskip("requests")
    # Nothing listens on the discard port of localhost, so the connection is refused at once.
    provider = EdgarProvider(cache_dir=tmp_path, user_agent=UA, tickers_url="http://127.0.0.1:9/company_tickers.json")
    with pytest.raises(ProviderUnavailableError) as caught:
        provider.get("AAPL")
    assert "\n" not in str(caught.value)
    assert "cannot reach 127.0.0.1:9" in str(caught.value)


@pytest.mark.parametrize(("status", "words"), [(403, "User-Agent"), (429, "rate limit"), (503, "HTTP 503")])
def test_http_errors_are_one_clear_line(tmp_path: Path, status: int, words: str) -> None:
    with pytest.raises(ProviderUnavailableError) as caught:
        make(tmp_path, RecordedSec(status=status)).get("AAPL")
    assert words in str(caught.value) and "\n" not in str(caught.value)


# --- cache -----------------------------------------------------------------------------------------------


def test_cache_hit_makes_no_second_request(tmp_path: Path) -> None:
    sec = RecordedSec()
    first = make(tmp_path, sec).get("AAPL")
    again = make(tmp_path, sec).get("AAPL")  # a new provider on the same folder
    assert again == first
    assert len(sec.calls) == 2
    cached = json.loads((tmp_path / "edgar" / "companyfacts" / "CIK0000320193.json").read_text())
    assert "dei" not in cached["value"]["facts"]  # only the concepts the provider reads are kept
    assert make(tmp_path, sec).tickers() == ["AAPL"]
    assert make(tmp_path / "empty", sec).tickers() == []


def test_cache_expiry(tmp_path: Path) -> None:
    sec, clock = RecordedSec(), FakeClock()
    provider = make(tmp_path, sec, clock)
    provider.get("AAPL")
    clock.now += 0.9 * DAY
    provider.get("AAPL")
    assert len(sec.calls) == 2  # both fresh
    clock.now += 0.2 * DAY
    provider.get("AAPL")
    assert sec.urls()[2:] == ["https://data.sec.gov/api/xbrl/companyfacts/CIK0000320193.json"]  # tickers: 7 days
    assert provider.tickers() == ["AAPL"]
    clock.now += 2 * DAY
    assert provider.tickers() == []  # expired entries are not offered as local data


def test_json_cache_writes_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = JsonCache(tmp_path, max_age=None)
    cache.put("a/b", {"v": 1})

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.put("a/b", {"v": 2})
    assert cache.get("a/b") == {"v": 1}  # the previous entry is intact
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.json"]  # no temporary file left


def test_json_cache_damaged_entry_is_a_miss(tmp_path: Path) -> None:
    cache = JsonCache(tmp_path)
    cache.path_for("x").write_text("{not json")
    assert cache.get("x") is None
    with pytest.raises(ValueError):
        cache.path_for("../escape")


# --- rate limiting ---------------------------------------------------------------------------------------


def test_rate_limiter_allows_ten_per_second() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, 1.0, clock=clock, sleep=clock.sleep)
    start = clock.now
    stamps = []
    for _ in range(25):
        limiter.acquire()
        stamps.append(clock.now - start)
    assert stamps[:10] == [0.0] * 10  # a burst of ten goes straight through
    assert stamps[10] == pytest.approx(1.0) and stamps[20] == pytest.approx(2.0)
    for i, t in enumerate(stamps):  # never more than ten calls inside any one-second window
        assert sum(1 for u in stamps[i:] if u - t < 1.0 - 1e-9) <= 10
    assert sum(clock.slept) == pytest.approx(2.0)


def test_provider_acquires_the_limiter_per_request_not_per_cache_hit(tmp_path: Path) -> None:
    class CountingLimiter(RateLimiter):
        def __init__(self) -> None:
            super().__init__(10, 1.0, clock=lambda: 0.0, sleep=lambda s: None)
            self.count = 0

        def acquire(self) -> float:
            self.count += 1
            return 0.0

    limiter = CountingLimiter()
    sec = RecordedSec()
    provider = EdgarProvider(cache_dir=tmp_path, user_agent=UA, fetch=sec, limiter=limiter)
    provider.get("AAPL")
    provider.get("AAPL")
    assert limiter.count == len(sec.calls) == 2


def test_registry_builds_the_edgar_provider(tmp_path: Path) -> None:
    provider = get_provider("edgar", cache_dir=tmp_path, user_agent=UA)
    assert isinstance(provider, MarketDataProvider)
    assert provider.name == "edgar" and provider.tickers() == []
