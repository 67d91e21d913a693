"""The industry summary of Testco against three invented peers, by hand, and its edge cases.

Testco (TST, see finance_factories): revenue 1,100 (+10.0%), gross 40%, operating 20%, EBITDA 25%, net
150/1,100, FCF 15%, ROIC 165/900, market cap 2,000, EV 2,300: EV/EBITDA 2,300/275, P/E 2,000/150,
EV/Sales 2,300/1,100. The peers (tax 25% and invested capital 900 as Testco unless said):

    ALP: revenue 2,000 (1,600: +25%), gross 600, operating 300, EBITDA 400, net 200, FCF 100, cap 5,000,
         EV 5,300 -> margins 30/15/20/10/5%, ROIC 225/900 = 25%, EV/EBITDA 13.25, P/E 25, EV/Sales 2.65
    BET: revenue 500 (500: 0%), gross 250, operating 150, EBITDA 175, net 100, FCF 50, cap 1,000, EV 1,300
         -> margins 50/30/35/20/10%, ROIC 112.5/900 = 12.5%, EV/EBITDA 1,300/175, P/E 10, EV/Sales 2.6
    GAM: one year, revenue 800, EBITDA -40, net -20, FCF 80, cap 400, EV 400 (no gross profit, operating
         income or prior year) -> EBITDA margin -5%, net -2.5%, FCF 10%, EV/Sales 0.5; no growth, gross or
         operating margin, ROIC, EV/EBITDA or P/E
"""

from __future__ import annotations

import pytest
from finance_factories import make_company, make_peer

from equitune.data.context import build_context
from equitune.finance import analyze_company, compute_ratios
from equitune.finance.industry import IndustrySummary, Rank, industry_summary, median_of, rank_of
from equitune.market.models import Company
from equitune.market.providers.embedded import load_snapshot


def _peer(ticker: str, cap: float, latest: dict[str, float], prior_revenue: float) -> Company:
    return make_company(
        ticker,
        latest=latest,
        prior={"revenue": prior_revenue},
        price=20.0,
        diluted_shares=cap / 20.0,
        market_cap=cap,
    )


def peers() -> list[Company]:
    alp = _peer(
        "ALP",
        5000.0,
        {
            "revenue": 2000.0,
            "gross_profit": 600.0,
            "operating_income": 300.0,
            "ebitda": 400.0,
            "net_income": 200.0,
            "free_cash_flow": 100.0,
        },
        1600.0,
    )
    bet = _peer(
        "BET",
        1000.0,
        {
            "revenue": 500.0,
            "gross_profit": 250.0,
            "operating_income": 150.0,
            "ebitda": 175.0,
            "net_income": 100.0,
            "free_cash_flow": 50.0,
        },
        500.0,
    )
    gam = make_peer("GAM", market_cap=400.0, debt=0.0, cash=0.0, ebitda=-40.0, revenue=800.0, net_income=-20.0)
    return [alp, bet, gam]


@pytest.fixture(scope="module")
def summary() -> IndustrySummary:
    group = peers()
    return industry_summary(make_company(), group, {p.ticker: compute_ratios(p) for p in group})


def test_company_figures_by_hand(summary: IndustrySummary) -> None:
    c = summary.company
    assert (c.revenue, c.market_cap) == (1100.0, 2000.0)
    assert c.revenue_growth == pytest.approx(0.10)
    assert (c.gross_margin, c.operating_margin, c.ebitda_margin) == (
        pytest.approx(0.40),
        pytest.approx(0.20),
        pytest.approx(0.25),
    )
    assert c.net_margin == pytest.approx(150 / 1100)
    assert c.fcf_margin == pytest.approx(0.15)
    assert c.roic == pytest.approx(165 / 900)
    assert c.ev_ebitda == pytest.approx(2300 / 275)
    assert c.pe == pytest.approx(2000 / 150)
    assert c.ev_sales == pytest.approx(2300 / 1100)


def test_peer_medians_by_hand(summary: IndustrySummary) -> None:
    m = summary.peer_median
    assert summary.peer_count == 3
    assert [p.ticker for p in summary.peers] == ["ALP", "BET", "GAM"]
    alp = summary.peers[0]
    assert (alp.name, alp.revenue, alp.revenue_growth, alp.roic) == (
        "ALP Testco",
        2000.0,
        pytest.approx(0.25),
        pytest.approx(0.25),
    )
    assert (alp.ev_ebitda, alp.pe, alp.ev_sales) == (
        pytest.approx(13.25),
        pytest.approx(25.0),
        pytest.approx(2.65),
    )
    gam = summary.peers[2]
    assert gam.revenue_growth is None and gam.ev_ebitda is None and gam.ebitda_margin == pytest.approx(-0.05)
    assert m.revenue == pytest.approx(800.0)  # 500, 800, 2,000
    assert m.market_cap == pytest.approx(1000.0)  # 400, 1,000, 5,000
    assert m.revenue_growth == pytest.approx(0.125)  # (0% + 25%) / 2; GAM has no prior year
    assert m.gross_margin == pytest.approx(0.40)  # (30% + 50%) / 2
    assert m.operating_margin == pytest.approx(0.225)  # (15% + 30%) / 2
    assert m.ebitda_margin == pytest.approx(0.20)  # -5%, 20%, 35%
    assert m.net_margin == pytest.approx(0.10)  # -2.5%, 10%, 20%
    assert m.fcf_margin == pytest.approx(0.10)  # 5%, 10%, 10%
    assert m.roic == pytest.approx(0.1875)  # (12.5% + 25%) / 2
    assert m.ev_ebitda == pytest.approx((13.25 + 1300 / 175) / 2)  # 10.339
    assert m.pe == pytest.approx(17.5)  # (10 + 25) / 2
    assert m.ev_sales == pytest.approx(2.6)  # 0.5, 2.6, 2.65


def test_ranks_by_hand(summary: IndustrySummary) -> None:
    r = summary.ranks
    assert r.revenue == Rank(position=2, out_of=4)  # behind ALP's 2,000
    assert r.market_cap == Rank(position=2, out_of=4)  # behind ALP's 5,000
    assert r.revenue_growth == Rank(position=2, out_of=3)  # behind ALP's 25%; GAM not ranked
    assert r.gross_margin == Rank(position=2, out_of=3)  # behind BET's 50%; ties with the median 40%
    assert r.operating_margin == Rank(position=2, out_of=3)  # behind BET's 30%
    assert r.ebitda_margin == Rank(position=2, out_of=4)  # behind BET's 35%
    assert r.net_margin == Rank(position=2, out_of=4)  # behind BET's 20%
    assert r.fcf_margin == Rank(position=1, out_of=4)  # 15% is the widest
    assert r.roic == Rank(position=2, out_of=3)  # behind ALP's 25%
    assert r.ev_ebitda == Rank(position=2, out_of=3)  # 8.36x behind ALP's 13.25x, above BET's 7.43x
    assert r.pe == Rank(position=2, out_of=3)  # 13.3x behind ALP's 25x
    assert r.ev_sales == Rank(position=3, out_of=4)  # 2.09x behind 2.65x and 2.6x


def test_totals_gaps_and_premiums_by_hand(summary: IndustrySummary) -> None:
    s = summary
    assert s.peer_revenue_total == pytest.approx(3300.0)  # 2,000 + 500 + 800
    assert s.group_revenue_total == pytest.approx(4400.0)  # + 1,100
    assert s.revenue_share == pytest.approx(0.25)  # 1,100 / 4,400
    assert s.revenue_to_peer_median == pytest.approx(1.375)  # 1,100 / 800
    assert s.revenue_growth_gap == pytest.approx(-0.025)  # 10% - 12.5%
    assert s.gross_margin_gap == pytest.approx(0.0, abs=1e-12)
    assert s.operating_margin_gap == pytest.approx(-0.025)
    assert s.ebitda_margin_gap == pytest.approx(0.05)
    assert s.net_margin_gap == pytest.approx(150 / 1100 - 0.10)
    assert s.fcf_margin_gap == pytest.approx(0.05)
    assert s.roic_gap == pytest.approx(165 / 900 - 0.1875)
    assert s.ev_ebitda_premium == pytest.approx((2300 / 275) / ((13.25 + 1300 / 175) / 2) - 1)  # -19.1%
    assert s.pe_premium == pytest.approx((2000 / 150) / 17.5 - 1)  # -23.8%
    assert s.ev_sales_premium == pytest.approx((2300 / 1100) / 2.6 - 1)  # -19.6%


def test_missing_peer_ratios_are_computed() -> None:
    group = peers()
    given = industry_summary(make_company(), group, {p.ticker: compute_ratios(p) for p in group})
    assert industry_summary(make_company(), group, {}) == given


def test_no_peers() -> None:
    s = industry_summary(make_company(), [], {})
    assert s.peer_count == 0
    assert s.peer_median.revenue is None and s.peer_median.ev_ebitda is None
    assert s.ranks.revenue == Rank(position=1, out_of=1)
    assert s.peer_revenue_total is None
    assert s.group_revenue_total == pytest.approx(1100.0)
    assert s.revenue_share == pytest.approx(1.0)
    assert s.revenue_growth_gap is None and s.ev_ebitda_premium is None and s.revenue_to_peer_median is None


def test_company_without_a_figure_is_not_ranked_on_it() -> None:
    company = make_company(latest={"gross_profit": None, "net_income": -10.0})
    group = peers()
    s = industry_summary(company, group, {})
    assert s.company.gross_margin is None and s.ranks.gross_margin is None and s.gross_margin_gap is None
    assert s.company.pe is None and s.ranks.pe is None and s.pe_premium is None  # a loss has no P/E
    assert s.ranks.net_margin == Rank(position=3, out_of=4)  # -0.9% ahead of GAM's -2.5% only


def test_rank_and_median_helpers() -> None:
    assert rank_of(5.0, [5.0, 6.0, None]) == Rank(position=2, out_of=3)  # ties share the better place
    assert rank_of(7.0, [5.0, 6.0]) == Rank(position=1, out_of=3)
    assert rank_of(None, [5.0]) is None
    assert median_of([None, 3.0, 1.0, 2.0, 10.0]) == pytest.approx(2.5)
    assert median_of([None]) is None


def test_embedded_summaries_agree_with_the_comparables() -> None:
    universe = list(load_snapshot().values())
    for company in universe[::7]:
        analysis = analyze_company(company, universe)
        ctx = build_context(company, universe, base=analysis)
        s = ctx.industry
        assert [p.ticker for p in s.peers] == [p.ticker for p in analysis.comparables.peers]
        for p in s.peers:
            assert p.ebitda_margin == ctx.peer_ratios[p.ticker].ebitda_margin
        for m in analysis.comparables.multiples:
            assert getattr(s.peer_median, m.multiple) == pytest.approx(m.median)
            assert getattr(s.company, m.multiple) == pytest.approx(m.company_multiple)
        assert s.company.ebitda_margin == pytest.approx(analysis.ratios.ebitda_margin)
        assert s.ranks.revenue is not None and s.ranks.revenue.out_of == s.peer_count + 1
        assert "industry.peer_median.revenue_growth" in ctx.facts
