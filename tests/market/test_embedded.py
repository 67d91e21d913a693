"""The embedded snapshot: coverage, internal consistency of every record, and lookup behaviour."""

from __future__ import annotations

from collections import Counter

import pytest

from equitune.errors import EquituneError, UnknownTickerError
from equitune.market import GICS_SECTORS, get_provider, resolve_sector
from equitune.market.models import Company, FiscalYear
from equitune.market.providers.embedded import EmbeddedProvider, load_snapshot

COMPANIES = list(load_snapshot().values())
IDS = [c.ticker for c in COMPANIES]


def test_coverage_at_least_60_companies_4_per_sector() -> None:
    per_sector = Counter(c.sector for c in COMPANIES)
    assert len(COMPANIES) >= 60
    assert set(per_sector) == set(GICS_SECTORS)
    assert min(per_sector.values()) >= 4, per_sector


@pytest.mark.parametrize("company", COMPANIES, ids=IDS)
def test_record_is_complete_and_sourced(company: Company) -> None:
    assert company.missing_fields() == []
    assert company.status == "complete"
    assert company.currency == "USD"
    assert "10-K" in company.source
    assert company.price_date is not None and company.price_date <= company.as_of
    assert len(company.financials) >= 2
    assert company.sector in GICS_SECTORS
    # Every record says which of its fields were not cross-checked against a copy of the filing.
    assert any(note.startswith("unverified: ") for note in company.notes)


@pytest.mark.parametrize("company", COMPANIES, ids=IDS)
def test_record_is_internally_consistent(company: Company) -> None:
    assert company.price and company.diluted_shares and company.market_cap
    assert company.market_cap == pytest.approx(company.price * company.diluted_shares, rel=0.02)
    latest = company.latest
    assert latest.net_income is not None and latest.eps_diluted
    # Banks' diluted EPS is after preferred dividends (several percent of net income at JPM, BAC, WFC, GS).
    eps_tolerance = 0.12 if company.institution == "bank" else 0.05
    assert latest.net_income / company.diluted_shares == pytest.approx(latest.eps_diluted, rel=eps_tolerance)
    for fy in company.financials:
        assert fy.revenue and fy.revenue > 0
        assert fy.dividends_per_share is not None and fy.dividends_per_share >= 0
        assert fy.period_end is not None and fy.period_end <= company.as_of
        if company.institution is not None:
            _check_institution(company, fy)
            continue
        assert fy.free_cash_flow == pytest.approx(fy.operating_cash_flow - fy.capex, abs=0.6)  # type: ignore[operator]
        assert fy.ebitda == pytest.approx(fy.operating_income + fy.depreciation_amortization, abs=0.6)  # type: ignore[operator]
        assert fy.gross_profit is not None and fy.gross_profit <= fy.revenue
        # Some filers put other operating income below gross profit (Lockheed: 'other income, net'), so
        # operating income may exceed gross profit, but only by a sliver of revenue.
        assert fy.operating_income is not None and fy.operating_income <= fy.gross_profit + 0.02 * fy.revenue
        assert fy.capex is not None and fy.capex >= 0
    years = [fy.fiscal_year for fy in company.financials]
    assert years[0] - years[1] == 1


def _check_institution(company: Company, fy: FiscalYear) -> None:
    """Identities of a bank's or insurer's year: equity inside assets, common equity inside equity, tangible
    inside common, net interest income and provisions inside revenue, a CET1 ratio between 4.5% (the Basel
    minimum) and 30%, and none of the lines that do not describe a lender (gross profit, EBITDA, capex)."""
    assert fy.total_equity is not None and fy.total_assets is not None and fy.common_equity is not None
    assert 0 < fy.common_equity <= fy.total_equity < fy.total_assets
    assert fy.pretax_income is not None and fy.income_tax_expense is not None and fy.net_income is not None
    # Net income is after tax; noncontrolling interests move it a little (Wells Fargo).
    assert fy.pretax_income - fy.income_tax_expense == pytest.approx(fy.net_income, rel=0.05)
    assert fy.gross_profit is None and fy.ebitda is None and fy.capex is None
    if company.institution == "bank":
        assert fy.net_interest_income is not None and 0 < fy.net_interest_income < fy.revenue
        assert fy.provision_for_credit_losses is not None and fy.provision_for_credit_losses < fy.revenue
        assert fy.cet1_ratio is not None and 0.045 <= fy.cet1_ratio <= 0.30
        if fy.tangible_common_equity is not None:
            assert 0 < fy.tangible_common_equity <= fy.common_equity


def test_coverage_names_the_design_examples_and_banks() -> None:
    tickers = {c.ticker for c in COMPANIES}
    assert {"MSFT", "TSLA"} <= tickers
    assert len(COMPANIES) >= 70
    assert sum(1 for c in COMPANIES if c.institution is not None) >= 4


def test_sub_industries_have_peers() -> None:
    """Most companies have at least two peers in their sub-industry (comparables rely on it)."""
    counts = Counter(c.sub_industry for c in COMPANIES)
    with_peers = sum(1 for c in COMPANIES if counts[c.sub_industry] >= 3)
    assert with_peers / len(COMPANIES) >= 0.4


def test_lookup_is_forgiving_about_case_and_class_spelling() -> None:
    provider = get_provider("embedded")
    assert provider.get("aapl").ticker == "AAPL"
    assert provider.get(" AAPL ").name == "Apple Inc."


def test_unknown_ticker_lists_closest() -> None:
    with pytest.raises(UnknownTickerError) as err:
        EmbeddedProvider().get("APPL")
    assert "AAPL" in err.value.suggestions
    assert "APPL" in str(err.value) and "Closest" in str(err.value)


def test_apple_figures_as_reported() -> None:
    apple = EmbeddedProvider().get("AAPL")
    fy24, fy23 = apple.financials[:2]
    assert (fy24.fiscal_year, fy24.revenue, fy24.net_income, fy24.eps_diluted) == (2024, 391035, 93736, 6.08)
    assert (fy23.fiscal_year, fy23.revenue, fy23.net_income, fy23.eps_diluted) == (2023, 383285, 96995, 6.13)


def test_sector_filter_and_aliases() -> None:
    provider = EmbeddedProvider()
    tech = provider.companies(resolve_sector("technology"))
    assert tech and all(c.sector == "Information Technology" for c in tech)
    assert resolve_sector("healthcare") == "Health Care"
    assert resolve_sector("REAL_ESTATE") == "Real Estate"
    assert resolve_sector("consumer staples") == "Consumer Staples"
    with pytest.raises(EquituneError, match="Valid GICS sectors: Communication Services"):
        resolve_sector("crypto")
