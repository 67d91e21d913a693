"""Scoring a JSONL file of model outputs: reading, every bad line reported, contexts, summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from equitune.errors import DataError
from equitune.evaluate.scoring import (
    ContextSource,
    OutputsFileError,
    read_outputs,
    score_outputs_file,
    summarise,
)
from equitune.formatting import fmt_price


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def _line(ref: Any, **extra: Any) -> dict[str, Any]:
    return {
        "ticker": ref.context.ticker,
        "task": ref.family,
        "prompt": ref.prompt,
        "output": ref.response,
        "condition": ref.context.condition.name,
        **extra,
    }


def test_scores_every_line_against_its_company_and_condition(
    tmp_path: Path, references: list[Any], source: ContextSource
) -> None:
    refs = references[:6] + references[-6:]
    lines = [_line(r, model="reference", id=f"r{i}") for i, r in enumerate(refs)]
    scored = score_outputs_file(_write(tmp_path / "out.jsonl", lines), contexts=source)
    assert [s.line for s in scored] == list(range(1, len(refs) + 1))
    assert [(s.ticker, s.task, s.condition) for s in scored] == [
        (r.context.ticker, r.family, r.context.condition.name) for r in refs
    ]
    assert all(s.score.tier == "Excellent" and s.model == "reference" for s in scored)
    assert scored[0].id == "r0"
    data = json.loads(json.dumps([s.to_dict() for s in scored]))
    assert data[0]["tier"] == "Excellent" and "checks" not in data[0]["fact_check"]


def test_condition_defaults_to_base_and_tickers_are_normalised(
    tmp_path: Path, references: list[Any], source: ContextSource
) -> None:
    ref = next(r for r in references if r.context.ticker == "AAPL" and r.context.is_base)
    line = _line(ref, ticker="aapl")
    del line["condition"]
    [scored] = score_outputs_file(_write(tmp_path / "out.jsonl", [line]), contexts=source)
    assert (scored.ticker, scored.condition) == ("AAPL", "base")
    assert scored.score.score >= 80


def test_the_condition_decides_what_is_right(tmp_path: Path, references: list[Any], source: ContextSource) -> None:
    # AAPL's base-case valuation is wrong under the rates-down condition: the target differs.
    ref = next(r for r in references if r.context.ticker == "AAPL" and r.context.is_base and r.family == "valuation")
    lines = [_line(ref), _line(ref, condition="rates_down_100bp")]
    base, other = score_outputs_file(_write(tmp_path / "out.jsonl", lines), contexts=source)
    assert base.score.fact_check.count("derived_wrong") == 0
    assert base.score.fact_check.agreement == {"price": True, "price_target": True, "upside": True, "rating": True}
    assert other.score.fact_check.count("derived_wrong") > 0 and other.score.score < base.score.score
    assert other.score.fact_check.agreement["price_target"] is False
    assert "target_with_upside" in {c.name for c in other.score.failed()}


def test_every_bad_line_is_reported_and_nothing_is_scored(tmp_path: Path, references: list[Any]) -> None:
    good = _line(references[0])
    lines = [
        good,
        "{not json",
        {**good, "ticker": "APPL", "task": "valuaton", "condtion": "base"},
        "",
        {"ticker": "AAPL", "task": "valuation", "output": 3, "condition": "boom"},
        [1, 2],
        {**good, "id": "x"},
        {**good, "id": "x", "model": 7},
        {**good, "prompt": "  "},
    ]
    path = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(OutputsFileError) as caught:
        score_outputs_file(path, contexts=ContextSource())
    error = caught.value
    assert isinstance(error, DataError)
    where = {(p.line, p.field) for p in error.problems}
    assert where == {
        (2, "(json)"),
        (3, "condtion"),
        (3, "task"),
        (3, "ticker"),
        (4, "(json)"),
        (5, "prompt"),
        (5, "output"),
        (5, "condition"),
        (6, "(record)"),
        (8, "model"),
        (9, "prompt"),
    }  # line 8's duplicate id is not reported: the line is already rejected for its model
    message = str(error)
    assert "nothing was scored" in message
    assert "line 3: ticker: unknown ticker 'APPL'" in message and "closest: AAPL" in message
    assert "line 3: task: unknown task 'valuaton'" in message
    assert "line 3: condtion: unknown field" in message


def test_a_timestamp_is_accepted_and_carried_through(
    tmp_path: Path, references: list[Any], source: ContextSource
) -> None:
    lines = [_line(references[0], id="a", timestamp="2025-03-14T17:00:00+00:00"), _line(references[1], id="b")]
    first, second = score_outputs_file(_write(tmp_path / "out.jsonl", lines), contexts=source)
    assert first.timestamp == "2025-03-14T17:00:00+00:00" and second.timestamp is None
    assert first.to_dict()["timestamp"] == "2025-03-14T17:00:00+00:00" and "timestamp" not in second.to_dict()
    with pytest.raises(OutputsFileError, match="line 1: timestamp: must be a string, got int"):
        read_outputs(_write(tmp_path / "bad.jsonl", [_line(references[0], timestamp=1741971600)]), source)


def test_a_production_log_can_be_rescored(tmp_path: Path, references: list[Any], source: ContextSource) -> None:
    from equitune.evaluate.monitor import log_production_output

    ref = next(r for r in references if r.context.is_base)
    log = tmp_path / "production.jsonl"
    record = log_production_output(
        ticker=ref.context.ticker,
        task=ref.family,
        prompt=ref.prompt,
        output=ref.response,
        model="equity-research:q4",
        meta={"request": 1},
        path=log,
        contexts=source,
    )
    [scored] = score_outputs_file(log, contexts=source)
    assert scored.timestamp == record["timestamp"] and scored.id == record["id"] and scored.meta == {"request": 1}
    assert scored.score.tier == "Excellent"


def test_duplicate_ids_are_reported_with_the_first_line(tmp_path: Path, references: list[Any]) -> None:
    lines = [_line(references[0], id="same"), _line(references[1], id="same")]
    with pytest.raises(OutputsFileError, match="line 2: id: duplicate id 'same' \\(first on line 1\\)"):
        read_outputs(_write(tmp_path / "dup.jsonl", lines), ContextSource())


def test_missing_and_empty_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        score_outputs_file(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty file"):
        score_outputs_file(tmp_path / "empty.jsonl")


def test_an_empty_output_is_scored_zero_not_rejected(
    tmp_path: Path, references: list[Any], source: ContextSource
) -> None:
    [scored] = score_outputs_file(_write(tmp_path / "o.jsonl", [_line(references[0], output="")]), contexts=source)
    assert scored.score.score == 0.0


def test_contexts_are_memoised_and_share_the_base_case(source: ContextSource) -> None:
    fresh = ContextSource(universe=source.universe)
    base = fresh.get("CME", "base")
    assert fresh.get("CME", "base") is base
    recession = fresh.get("CME", "recession")
    assert recession.base is base.analysis
    assert len(fresh) == 2
    assert fresh.resolve("cme") == "CME" and fresh.resolve("NOPE") is None
    with pytest.raises(ValueError, match="unknown condition"):
        fresh.get("CME", "boom")


def test_contexts_use_the_configured_valuation(references: list[Any]) -> None:
    from equitune.config import EquituneConfig

    config = EquituneConfig()
    config.valuation.dcf_weight = 1.0
    custom = ContextSource.from_config(config).get("AAPL", "base")
    default = ContextSource().get("AAPL", "base")
    assert custom.analysis.target.price_target != default.analysis.target.price_target


def test_summary_per_model_and_task(tmp_path: Path, references: list[Any], source: ContextSource) -> None:
    ref = next(r for r in references if r.family == "executive_summary")
    target = fmt_price(ref.context.analysis.target.price_target)
    wrong = ref.response.replace(target, fmt_price(ref.context.analysis.target.price_target * 2))
    lines = [_line(ref, model="a"), _line(ref, model="b", output=wrong), _line(ref, model="b")]
    summary = summarise(score_outputs_file(_write(tmp_path / "o.jsonl", lines), contexts=source))
    assert summary["overall"]["outputs"] == 3
    a, b = summary["models"]["a"], summary["models"]["b"]
    assert a["mean_score"] > b["mean_score"] and a["tiers"]["Excellent"] == 1
    assert b["derived_wrong"] > 0 and b["failed_consistency"] == 1
    assert b["tasks"]["executive_summary"]["outputs"] == 2
    json.dumps(summary)


def test_summary_means_match_an_evaluation(tmp_path: Path, references: list[Any], source: ContextSource) -> None:
    from equitune.evaluate.benchmark import summarise_scores

    ref = next(r for r in references if r.family == "valuation")
    lines = [_line(ref, model="m"), _line(ref, model="m", output=ref.response[: len(ref.response) // 3])]
    lines.append(_line(ref, model="m", output="Buy it."))
    scored = score_outputs_file(_write(tmp_path / "o.jsonl", lines), contexts=source)
    summary = summarise(scored)
    evaluation = summarise_scores([s.score for s in scored])
    # Mean scores are rounded to 2 decimals, as in an evaluation; rates to 4.
    for stats in (summary["overall"], summary["models"]["m"], summary["models"]["m"]["tasks"]["valuation"]):
        assert stats["mean_score"] == evaluation["mean_score"] == round(stats["mean_score"], 2)
        assert stats["hallucination_rate"] == evaluation["hallucination_rate"]
    assert summarise([])["overall"]["mean_score"] is None
