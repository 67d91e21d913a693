"""The csv provider: the real S&P 500 files through the "sp500" preset, and a user file with a mapping."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from equitune.errors import ConfigError, DataError, UnknownTickerError
from equitune.market import get_provider
from equitune.market.base import MarketDataProvider
from equitune.market.providers.csv_provider import CsvMapping, CsvProvider, load_csv

REPO_ROOT = Path(__file__).resolve().parents[2]
SP500_DIR = REPO_ROOT.parent / "shared" / "data" / "sp500"
FINANCIALS = SP500_DIR / "constituents-financials.csv"
AS_OF = dt.date(2026, 8, 22)  # the financials file's date, per its README

needs_sp500 = pytest.mark.skipif(
    not FINANCIALS.is_file(), reason=f"S&P 500 reference files not found at {SP500_DIR} (shared/data/sp500)"
)


@pytest.fixture(scope="module")
def sp500() -> CsvProvider:
    if not FINANCIALS.is_file():
        pytest.skip(f"S&P 500 reference files not found at {SP500_DIR}")
    return CsvProvider(FINANCIALS, mapping="sp500", as_of=AS_OF)


# --- the real S&P 500 files ------------------------------------------------------------------------------


@needs_sp500
def test_sp500_counts_every_row_kept(sp500: CsvProvider) -> None:
    report = sp500.report
    assert report.rows == 503
    assert len(sp500.tickers()) == 503
    # One trailing period and no beta, cash or debt columns: no record can be complete by the model's rule.
    assert (report.complete, report.partial, len(report.rejected)) == (0, 503, 0)
    # 335 rows without blanks + 20 whose only blank is P/E + 18 banks and insurers whose only blank is EBITDA
    # (a lender's record does not promise EBITDA; it promises net interest income, provisions and capital).
    assert report.as_complete_as_file == 373
    assert {"beta", "gross_profit", "cash", "total_debt", "a second fiscal year"} <= set(report.not_provided)
    assert {"net_interest_income", "cet1_ratio", "common_equity"} <= set(report.not_provided)
    assert "revenue" not in report.not_provided and "ebitda" not in report.not_provided


@needs_sp500
def test_sp500_blank_cells_match_the_readme(sp500: CsvProvider) -> None:
    blanks = sp500.report.blank_cells
    assert blanks["Price/Earnings"] == 47
    assert blanks["Dividend Yield"] == 104
    assert blanks["EBITDA"] == 43
    missing = sp500.report.missing
    # 43 blank EBITDA cells, 19 of them banks' and insurers' rows, which do not need one.
    assert missing["EBITDA blank"] == 24
    assert missing["Dividend Yield blank"] == 104
    assert sp500.report.missing_fields["EBITDA blank"] == ["ebitda"]
    assert "Price/Earnings blank" not in missing  # EPS is read directly; a blank P/E loses nothing


@needs_sp500
def test_sp500_report_format(sp500: CsvProvider) -> None:
    text = sp500.report.format()
    lines = text.splitlines()
    assert lines[0] == "constituents-financials.csv: 503 rows -> 0 complete, 503 partial, 0 rejected."
    assert "  EBITDA blank: 24 (no ebitda)" in lines
    assert "  Dividend Yield blank: 104 (no dividends_per_share)" in lines
    assert any(line.startswith("Sector join with constituents.csv: 465 of 503 symbols matched") for line in lines)
    assert any(line.startswith("Negative Price/Book") and line.endswith(": 32.") for line in lines)


@needs_sp500
def test_sp500_mmm_values_and_derivations(sp500: CsvProvider) -> None:
    mmm = sp500.get("MMM")
    fy = mmm.latest
    market_cap = 92_293_693_440 / 1e6
    shares = market_cap / 178.96
    assert mmm.price == 178.96
    assert mmm.market_cap == pytest.approx(market_cap)
    assert mmm.diluted_shares == pytest.approx(shares)
    assert fy.revenue == pytest.approx(market_cap / 3.665357)
    assert fy.revenue == pytest.approx(25_180.0, abs=0.01)
    assert fy.total_equity == pytest.approx(market_cap / 31.26485)
    assert fy.net_income == pytest.approx(5.63 * shares)
    assert fy.eps_diluted == 5.63
    assert fy.dividends_per_share == pytest.approx(0.0175 * 178.96)
    assert fy.ebitda == pytest.approx(6_488.0)
    assert (fy.fiscal_year, fy.period_end) == (2026, None)
    assert len(mmm.financials) == 1
    assert mmm.status == "partial"
    assert mmm.beta is None and fy.gross_profit is None
    assert mmm.as_of == AS_OF and mmm.price_date == AS_OF
    assert "constituents-financials.csv" in mmm.source
    notes = " | ".join(mmm.notes)
    assert "revenue derived: 'Market Cap' ÷ 'Price/Sales'" in notes
    assert "diluted_shares derived: 'Market Cap' ÷ 'Price'" in notes
    assert "total_equity derived: 'Market Cap' ÷ 'Price/Book'" in notes
    assert "net_income derived: 'Earnings/Share' × shares" in notes
    assert "dividends_per_share derived: 'Dividend Yield' × 'Price'" in notes
    assert "not a reported fiscal year" in notes
    assert any(n.startswith("Missing: beta") for n in mmm.notes)


@needs_sp500
def test_sp500_sector_join_and_sub_industry(sp500: CsvProvider) -> None:
    mmm = sp500.get("MMM")
    # The financials file's "Sector" column holds the sub-industry; the GICS sector comes from the join.
    assert (mmm.sector, mmm.sub_industry, mmm.cik) == ("Industrials", "Industrial Conglomerates", 66740)
    assert sp500.get("ABBV").sector == "Health Care"
    # BK is only in the financials file (constituents.csv lists BNY): sector inferred from its sub-industry.
    bk = sp500.get("BK")
    assert bk.sector == "Financials"
    assert any("sector inferred" in n for n in bk.notes)
    # MHK's sub-industry appears nowhere in constituents.csv: sector unknown, record kept as partial.
    mhk = sp500.get("MHK")
    assert mhk.sector == "Unknown" and mhk.status == "partial"
    assert sp500.report.missing["sector unknown (not in constituents.csv)"] == 2


@needs_sp500
def test_sp500_quirks(sp500: CsvProvider) -> None:
    abbv = sp500.get("ABBV")  # negative Price/Book -> negative book equity, said in the notes
    assert abbv.latest.total_equity is not None and abbv.latest.total_equity < 0
    assert any("negative book equity" in n for n in abbv.notes)
    jpm = sp500.get("JPM")  # a bank: EBITDA blank, and not needed; what a bank's record needs is missing
    assert jpm.latest.ebitda is None and jpm.institution == "bank"
    assert not any("EBITDA blank" in n for n in jpm.notes)
    assert any("FY2026.net_interest_income" in n and "FY2026.cet1_ratio" in n for n in jpm.notes)
    assert sp500.get("AMZN").latest.dividends_per_share is None  # blank yield is not assumed to be zero
    # BRK.B: every figure blank in the file, still kept; other vendors' spelling finds it.
    brk = sp500.get("brk-b")
    assert brk.ticker == "BRK.B"
    assert brk.price is None and brk.latest.revenue is None and brk.status == "partial"
    assert brk.sector == "Financials"
    assert sp500.get("BF/B").ticker == "BF.B"


@needs_sp500
def test_sp500_unknown_ticker_suggests_close_ones(sp500: CsvProvider) -> None:
    with pytest.raises(UnknownTickerError) as caught:
        sp500.get("MMMX")
    assert "MMM" in caught.value.suggestions
    assert caught.value.provider == "csv"


@needs_sp500
def test_sp500_files_are_not_copied_into_the_repository() -> None:
    copies = []
    for folder, subfolders, files in os.walk(REPO_ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]  # skip .venv, .git, caches
        copies += [Path(folder, f) for f in files if f.startswith("constituents") and f.endswith(".csv")]
    assert copies == []


@needs_sp500
def test_registry_builds_the_csv_provider() -> None:
    provider = get_provider("csv", path=FINANCIALS, mapping="sp500", as_of=AS_OF)
    assert isinstance(provider, MarketDataProvider)
    assert provider.get("MMM").price == 178.96


# --- a user's own file -----------------------------------------------------------------------------------

USER_HEADER = (
    "Ticker,Company,GICS,Industry,FYE,Year,Year end,Close,Shares (m),Beta,Sales ($),Gross ($),EBIT ($),"
    "D&A ($),Net income ($000),EPS,CFO ($),Capex ($),Cash ($),Debt ($),Equity ($),Div/share"
)
USER_MAPPING = {
    "ticker": "Ticker",
    "name": "Company",
    "sector": "GICS",
    "sub_industry": "Industry",
    "fiscal_year_end": "FYE",
    "fiscal_year": "Year",
    "period_end": "Year end",
    "price": "Close",
    "diluted_shares": {"column": "Shares (m)", "unit": "millions"},
    "beta": "Beta",
    "revenue": {"column": "Sales ($)", "unit": "dollars"},
    "gross_profit": {"column": "Gross ($)", "unit": "dollars"},
    "operating_income": {"column": "EBIT ($)", "unit": "dollars"},
    "depreciation_amortization": {"column": "D&A ($)", "unit": "dollars"},
    "net_income": {"column": "Net income ($000)", "unit": "thousands"},
    "eps_diluted": "EPS",
    "operating_cash_flow": {"column": "CFO ($)", "unit": "dollars"},
    "capex": {"column": "Capex ($)", "scale": 1e-6},
    "cash": {"column": "Cash ($)", "unit": "dollars"},
    "total_debt": {"column": "Debt ($)", "unit": "dollars"},
    "total_equity": {"column": "Equity ($)", "unit": "dollars"},
    "dividends_per_share": "Div/share",
}
# Invented companies. ACME has two complete years; GLBX lacks its 2024 gross profit; the last three rows
# cannot become records.
USER_ROWS = [
    "ACME,Acme Widgets,Industrials,Industrial Machinery,December,2024,2024-12-31,50.00,100,1.1,"
    '"1,200,000,000",480000000,240000000,60000000,180000,1.80,250000000,70000000,90000000,300000000,'
    "800000000,0.60",
    "ACME,Acme Widgets,Industrials,Industrial Machinery,December,2023,2023-12-31,50.00,100,1.1,"
    "1000000000,400000000,200000000,50000000,150000,1.50,210000000,60000000,80000000,320000000,"
    "700000000,0.55",
    "glbx,Globex,Information Technology,Application Software,June,FY2024,2024-06-30,20,50,1.3,"
    "500000000,,100000000,20000000,(5000),-0.10,40000000,10000000,60000000,0,200000000,0",
    ",Nameless Co,Industrials,Building Products,December,2024,2024-12-31,10,10,1,1,1,1,1,1,1,1,1,1,1,1,0",
    "INIT,Initech,Information Technology,IT Consulting,December,2024,2024-12-31,n/a,10,1,"
    "about a billion,1,1,1,1,1,1,1,1,1,1,0",
    "ACME,Acme Widgets,Industrials,Industrial Machinery,December,2024,2024-12-31,50,100,1.1,1,1,1,1,1,1,1,1,1,1,1,0",
]


def write_csv(folder: Path, rows: list[str], header: str = USER_HEADER, name: str = "fundamentals.csv") -> Path:
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_user_file_with_custom_mapping(tmp_path: Path) -> None:
    path = write_csv(tmp_path, USER_ROWS)
    provider = CsvProvider(path, mapping=USER_MAPPING, as_of=dt.date(2025, 3, 1))
    report = provider.report
    assert (report.rows, report.complete, report.partial, len(report.rejected)) == (6, 1, 1, 3)
    assert provider.tickers() == ["ACME", "GLBX"]

    acme = provider.get("acme")
    assert acme.status == "complete" and acme.missing_fields() == []
    assert [fy.fiscal_year for fy in acme.financials] == [2024, 2023]
    fy = acme.latest
    assert fy.revenue == 1_200.0  # "1,200,000,000" dollars -> millions
    assert fy.net_income == 180.0  # thousands -> millions
    assert fy.capex == 70.0  # explicit scale
    assert fy.ebitda == 300.0  # derived: operating income + D&A
    assert fy.free_cash_flow == 180.0  # derived: CFO - capex
    assert fy.period_end == dt.date(2024, 12, 31)
    assert acme.market_cap == pytest.approx(5_000.0)  # derived: price x shares
    assert (acme.sector, acme.fiscal_year_end) == ("Industrials", "December")
    assert any("ebitda derived: 'EBIT ($)' + 'D&A ($)'" in n for n in acme.notes)

    glbx = provider.get("GLBX")
    assert glbx.status == "partial"
    assert glbx.latest.net_income == -5.0  # accounting-style (5000) thousands
    assert glbx.latest.gross_profit is None
    assert any(n.startswith("Missing: ") and "FY2024.gross_profit" in n for n in glbx.notes)
    assert report.missing["Gross ($) blank"] == 1
    assert report.missing["only 1 fiscal year(s) in the file"] == 1

    rejected = {r.line: r.reason for r in report.rejected}
    assert rejected[5] == "no symbol"
    assert rejected[6] == "unparsable number in column 'Sales ($)': 'about a billion'"
    assert rejected[7].startswith("duplicate symbol: ACME FY2024 (first on line 2)")
    assert report.rejected_reasons() == {
        "no symbol": 1,
        "unparsable number in column 'Sales ($)'": 1,
        "duplicate symbol": 1,
    }

    text = report.format()
    assert text.splitlines()[0] == "fundamentals.csv: 6 rows -> 1 complete, 1 partial, 3 rejected."
    assert "  line 5: no symbol" in text


def test_mapping_from_yaml_file_and_identity_mapping(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("ticker: Symbol\nprice: Last\nmarket_cap: {column: Cap, unit: billions}\n")
    path = write_csv(tmp_path, ["XYZ,12.5,2.5"], header="Symbol,Last,Cap", name="a.csv")
    xyz = CsvProvider(path, mapping=str(mapping), as_of=dt.date(2025, 1, 2)).get("XYZ")
    assert (xyz.price, xyz.market_cap, xyz.diluted_shares) == (12.5, 2_500.0, 200.0)

    # Without a mapping, columns named like our fields are read as they are.
    plain = write_csv(tmp_path, ["ABC,Abc Corp,Utilities,9.5,1000"], header="ticker,name,sector,price,revenue")
    companies, report = load_csv(plain, as_of=dt.date(2025, 1, 2))
    abc = companies["ABC"]
    assert (abc.name, abc.sector, abc.price, abc.latest.revenue) == ("Abc Corp", "Utilities", 9.5, 1_000.0)
    assert report.partial == 1


def test_as_of_defaults_to_file_date_and_says_so(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["XYZ,1"], header="ticker,price")
    company = CsvProvider(path).get("XYZ")
    assert company.as_of == dt.date.fromtimestamp(path.stat().st_mtime)
    assert any("modification date" in n for n in company.notes)


def test_missing_mapped_column_names_file_line_and_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["XYZ,1"], header="Symbol,Close")
    with pytest.raises(DataError) as caught:
        CsvProvider(path, mapping={"ticker": "Symbol", "price": "Price"})
    message = str(caught.value)
    assert str(path) in message and "line 1" in message and "'Price'" in message and "price" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"ticker,price\nAAA,1\nBBB\n", ["line 3", "no cell for column 'price'"]),
        (b"ticker,price\nAAA,1,2\n", ["line 2", "extra cell after column 'price'"]),
        (b'ticker,price\nAAA,"1\n', ["line 2", "malformed CSV"]),
        (b"ticker,price\nAAA,1\nB\xe9B,2\n", ["line 3", "not UTF-8"]),
        (b"", ["line 1", "no header"]),
    ],
    ids=["short-row", "long-row", "open-quote", "not-utf8", "empty"],
)
def test_malformed_file_is_a_data_error(tmp_path: Path, content: bytes, expected: list[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        CsvProvider(path, as_of=dt.date(2025, 1, 1))
    assert str(path) in str(caught.value)
    for part in expected:
        assert part in str(caught.value)


def test_bad_mappings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="revenu"):
        CsvMapping.resolve({"ticker": "T", "revenu": "Sales"})
    with pytest.raises(ConfigError, match="'ticker'"):
        CsvMapping.resolve({"price": "Close"})
    with pytest.raises(ConfigError, match="'unit' or 'scale'"):
        CsvMapping.resolve({"ticker": "T", "revenue": {"column": "S", "unit": "dollars", "scale": 2}})
    with pytest.raises(ConfigError, match="Unknown CSV mapping 'sp600'"):
        CsvMapping.resolve("sp600")
    with pytest.raises(ConfigError, match="needs a file"):
        CsvProvider(None)


def test_non_positive_price_is_missing_not_rejected(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["XYZ,0,5"], header="ticker,price,market_cap")
    provider = CsvProvider(path, as_of=dt.date(2025, 1, 1))
    xyz = provider.get("XYZ")
    assert xyz.price is None and xyz.status == "partial"
    assert provider.report.missing["price not positive (0)"] == 1
