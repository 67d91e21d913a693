"""Every embedded company (whatever the snapshot holds when this runs) gets finite, consistent values."""

from __future__ import annotations

import json

import pytest

from equitune.errors import FinanceError
from equitune.finance import CompanyAnalysis, ValuationAssumptions, analyze_company, rating_for
from equitune.market.models import Company
from equitune.market.providers.embedded import EmbeddedProvider

UNIVERSE: list[Company] = EmbeddedProvider().companies()


def _valuable(company: Company) -> bool:
    market = [company.price, company.diluted_shares, company.market_cap]
    return bool(company.financials) and sum(v is not None for v in market) >= 2


@pytest.mark.parametrize("company", UNIVERSE, ids=[c.ticker for c in UNIVERSE])
def test_embedded_company_values_consistently(company: Company) -> None:
    if not _valuable(company):
        with pytest.raises(FinanceError):
            analyze_company(company, UNIVERSE)
        return
    result = analyze_company(company, UNIVERSE)
    json.dumps(result.model_dump(mode="json"), allow_nan=False)  # finite everywhere
    assert CompanyAnalysis.model_validate_json(result.model_dump_json()) == result
    assert company.ticker not in [p.ticker for p in result.comparables.peers]
    peer_tickers = {p.ticker for p in result.comparables.peers}
    assert all(c.sector == company.sector for c in UNIVERSE if c.ticker in peer_tickers)

    price = result.market.price
    if result.price_target is not None:
        assert result.price_target > 0 and result.upside is not None
        assert result.upside == pytest.approx(result.price_target / price - 1, rel=1e-12, abs=1e-12)
        assert result.rating == rating_for(result.upside, ValuationAssumptions())
        a = result.assumptions
        if result.rating == "Buy":
            assert result.upside >= a.buy_threshold
        elif result.rating == "Sell":
            assert result.upside < a.sell_threshold
        else:
            assert a.sell_threshold <= result.upside < a.buy_threshold
    else:
        assert result.upside is None and result.rating is None

    if result.dcf is not None:
        assert result.dcf.sensitivity is not None
        assert result.dcf.sensitivity.values[2][2] == pytest.approx(result.dcf.value_per_share)
        assert result.dcf.meaningful == (result.dcf.enterprise_value > 0 and result.dcf.equity_value > 0)
    else:
        assert result.dcf_error
    base = result.scenarios[1]
    assert base.value_per_share == pytest.approx(result.price_target)


def test_the_snapshot_is_not_empty() -> None:
    assert len(UNIVERSE) >= 1
    assert "AAPL" in {c.ticker for c in UNIVERSE}
