"""ValuationAssumptions: documented defaults, ranges that name field, value and bound, cross-field rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from equitune.finance import ScenarioShift, ValuationAssumptions


def test_defaults_are_the_documented_values() -> None:
    a = ValuationAssumptions()
    assert (a.risk_free_rate, a.equity_risk_premium, a.terminal_growth) == (0.045, 0.0433, 0.025)
    assert a.beta_adjustment == "blume"
    assert a.projection_years == 5
    assert a.cost_of_debt is None and a.tax_rate is None and a.exit_multiple is None
    assert a.fallback_tax_rate == 0.21
    assert (a.buy_threshold, a.sell_threshold) == (0.15, 0.0)
    assert a.min_peers == 3
    assert a.dcf_weight == 0.5
    assert a.terminal_value_method == "gordon"
    assert (a.sensitivity_wacc_step, a.sensitivity_growth_step, a.sensitivity_steps) == (0.005, 0.005, 2)
    assert a.bull == ScenarioShift(revenue_growth=0.02, fcf_margin=0.02, wacc=-0.005, exit_multiple=1.0)
    assert a.bear == ScenarioShift(revenue_growth=-0.02, fcf_margin=-0.02, wacc=0.005, exit_multiple=-1.0)
    assert a.rating_bands() == "Buy >= +15.0%; Hold +0.0% to +15.0%; Sell < +0.0%"


def test_every_field_is_documented() -> None:
    for model in (ValuationAssumptions, ScenarioShift):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_out_of_range_names_field_value_and_bound() -> None:
    with pytest.raises(ValidationError) as info:
        ValuationAssumptions(risk_free_rate=0.5)
    text = str(info.value)
    assert "risk_free_rate" in text
    assert "0.5" in text
    assert "less than or equal to 0.2" in text
    with pytest.raises(ValidationError, match="projection_years"):
        ValuationAssumptions(projection_years=0)
    with pytest.raises(ValidationError, match="bull.wacc"):
        ValuationAssumptions.model_validate({"bull": {"wacc": 0.2}})


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ValidationError, match="terminal_grwth"):
        ValuationAssumptions.model_validate({"terminal_grwth": 0.02})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sell_threshold": 0.2, "buy_threshold": 0.1}, "sell_threshold"),
        ({"min_tax_rate": 0.3, "max_tax_rate": 0.2}, "min_tax_rate"),
        ({"min_cost_of_debt": 0.2, "max_cost_of_debt": 0.1}, "min_cost_of_debt"),
        ({"min_initial_growth": 0.3, "max_initial_growth": 0.2}, "min_initial_growth"),
        ({"min_fcf_margin": 0.5, "max_fcf_margin": 0.4}, "min_fcf_margin"),
        ({"comps_weight_ev_ebitda": 0, "comps_weight_pe": 0, "comps_weight_ev_sales": 0}, "comps_weight"),
        ({"bull": {"revenue_growth": -0.05}}, "bull.revenue_growth"),
        ({"bull": {"wacc": 0.01}}, "bull.wacc"),
    ],
)
def test_cross_field_rules(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ValuationAssumptions.model_validate(values)


def test_equal_thresholds_are_allowed_and_json_round_trips() -> None:
    a = ValuationAssumptions(buy_threshold=0.05, sell_threshold=0.05, exit_multiple=12.0)
    assert ValuationAssumptions.model_validate_json(a.model_dump_json()) == a


def test_assignment_is_validated() -> None:
    a = ValuationAssumptions()
    with pytest.raises(ValidationError):
        a.terminal_growth = 0.5
