"""Reverse DCF: the growth and the margin a price implies, against worked examples and the DCF itself.

One-year example, worked by hand: base revenue R = 1,000, FCF margin m = 10%, WACC w = 9%, terminal growth g = 2%,
debt 200, cash 100, 10m shares. With N = 1 the enterprise value is
``FCF_1 / (1 + w) + FCF_1 (1 + g) / ((w - g)(1 + w)) = FCF_1 / (w - g) = m R (1 + g0) / (w - g)``, so a price P
implies ``g0 = (10 P + 200 - 100)(w - g) / (m R) - 1``: P = 140 gives EV 1,500 and g0 = 1,500 x 0.07 / 100 - 1 = 5%;
and at g0 = 5% a price of 154 (EV 1,640) implies ``m = 1,640 x 0.07 / 1,050 = 10.9333%``.
The three-year example of ``test_dcf.py`` is worth 11.75 per share at 10% growth and a 10% margin.
"""

from __future__ import annotations

import pytest
from finance_factories import simple_inputs

from equitune.finance import ValuationAssumptions, analyze_company, run_dcf
from equitune.finance.reverse_dcf import dcf_value_per_share, reverse_dcf
from equitune.market.providers.embedded import EmbeddedProvider


def one_year(**changes: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {
        "projection_years": 1, "initial_growth": 0.05, "terminal_growth": 0.02, "fcf_margin": 0.10, "wacc": 0.09,
        "total_debt": 200.0, "cash": 100.0, "diluted_shares": 10.0, "exit_multiple": None, "ebitda_margin": None,
    }  # fmt: skip
    values.update(changes)
    return simple_inputs(**values)


def test_one_year_example_worked_by_hand() -> None:
    inputs = one_year()
    assert run_dcf(inputs).value_per_share == pytest.approx(140.0)
    implied = reverse_dcf(inputs, 140.0)
    assert implied.implied_initial_growth == pytest.approx(0.05, abs=1e-9)
    assert implied.implied_fcf_margin == pytest.approx(0.10, abs=1e-9)
    assert reverse_dcf(inputs, 154.0).implied_fcf_margin == pytest.approx(1640 * 0.07 / 1050, abs=1e-9)
    assert reverse_dcf(inputs, 154.0).implied_initial_growth == pytest.approx(1640 * 0.07 / 100 - 1, abs=1e-9)


def test_the_three_year_worked_example_comes_back() -> None:
    implied = reverse_dcf(simple_inputs(), 11.75)
    assert implied.implied_initial_growth == pytest.approx(0.10, abs=1e-9)
    assert implied.implied_fcf_margin == pytest.approx(0.10, abs=1e-9)
    assert implied.notes == []
    text = implied.statement()
    assert (
        "$11.75 share price implies first-year revenue growth of 10.0% (the DCF uses 10.0%), fading to 2.0% over "
        "three years" in text
    )
    assert "or an FCF margin of 10.0%" in text and "at the DCF's WACC of 10.0%, the $11.75 share price implies" in text


@pytest.mark.parametrize("method", ["gordon", "exit_multiple", "average"])
@pytest.mark.parametrize("mid_year", [False, True])
def test_the_fast_evaluator_is_the_dcf(method: str, mid_year: bool) -> None:
    inputs = simple_inputs(terminal_value_method=method, mid_year_convention=mid_year)
    for growth, margin in ((0.10, 0.10), (-0.2, 0.05), (0.8, 0.3), (0.0, -0.1)):
        changed = inputs.model_copy(update={"initial_growth": growth, "fcf_margin": margin})
        assert dcf_value_per_share(inputs, growth, margin) == pytest.approx(run_dcf(changed).value_per_share)


def test_a_higher_price_implies_more_growth_and_a_higher_margin() -> None:
    inputs = simple_inputs()
    prices = [6.0, 9.0, 11.75, 15.0, 25.0]
    growths = [reverse_dcf(inputs, p).implied_initial_growth for p in prices]
    margins = [reverse_dcf(inputs, p).implied_fcf_margin for p in prices]
    assert all(g is not None for g in growths) and growths == sorted(growths)  # type: ignore[type-var]
    assert all(m is not None for m in margins) and margins == sorted(margins)  # type: ignore[type-var]
    higher_wacc = reverse_dcf(simple_inputs(wacc=0.12), 11.75).implied_initial_growth
    assert higher_wacc is not None and higher_wacc > 0.10  # a dearer discount rate needs more growth for one price


def test_missing_answers_say_why() -> None:
    losing = reverse_dcf(simple_inputs(fcf_margin=-0.05), 11.75)
    assert losing.implied_initial_growth is None
    assert "FCF margin -5.0% is not positive: more growth lowers the value" in losing.notes
    assert losing.implied_fcf_margin is not None  # a margin still answers
    dear = reverse_dcf(simple_inputs(), 100_000.0)
    assert dear.implied_initial_growth is None and dear.implied_fcf_margin is None
    assert dear.notes[0].startswith(
        "the price is above every DCF value that any first-year growth from a fall of nine tenths"
    )
    assert dear.statement().startswith("Implied by the price (reverse DCF): the price is above")
    assert reverse_dcf(simple_inputs(), 0.0).notes == ["price 0.00 is not positive"]


def test_every_embedded_company_gets_a_reverse_dcf_that_reprices_it() -> None:
    universe = EmbeddedProvider().companies()
    assumptions = ValuationAssumptions()
    answered = 0
    for company in universe:
        analysis = analyze_company(company, universe, assumptions)
        if analysis.method != "dcf":  # banks, insurers, utilities, REITs: the sector model's implied figure
            assert analysis.reverse_dcf is None and analysis.implied, company.ticker
            continue
        if analysis.dcf is None:
            assert analysis.reverse_dcf is None
            continue
        implied = analysis.reverse_dcf
        assert implied is not None and implied.price == analysis.market.price
        assert implied.model_initial_growth == analysis.dcf.inputs.initial_growth
        inputs = analysis.dcf.inputs
        if implied.implied_initial_growth is not None:
            answered += 1
            value = dcf_value_per_share(inputs, implied.implied_initial_growth, inputs.fcf_margin)
            assert value == pytest.approx(implied.price, rel=1e-6)
        else:
            assert implied.notes, company.ticker
    assert (
        answered
        >= sum(1 for c in universe if c.institution is None and c.sector not in ("Utilities", "Real Estate")) * 0.8
    )
