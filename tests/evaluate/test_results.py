"""The results.json contract: validation with JSON paths, the Markdown and HTML views, and writing a run folder."""

from __future__ import annotations

import copy
import json
import math
import re
import statistics
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from equitune.errors import DataError
from equitune.evaluate import results as R
from equitune.evaluate.scoring import summarise_scores
from equitune.evaluate.weights import CATEGORIES, TIERS, tier_for

CANDIDATE = "equity_research_llama:v1"
BASELINE = "smollm2:135m"
PROMPTS = [("p001", "AAPL", "valuation", "base"), ("p002", "ED", "risk_assessment", "recession")]
PROMPTS.append(("p003", "EOG", "executive_summary", "rates_up_100bp"))
# Per prompt: score, the four category scores, hallucination rate, derived-error rate, key-fact coverage,
# figures, unsupported, derived wrong, failed consistency checks.
ANSWERS: dict[str, list[tuple[float, list[float], float | None, float | None, float | None, int, int, int, int]]] = {
    CANDIDATE: [
        (72.5, [70.0, 75.0, 68.0, 78.0], 0.1, 0.25, 0.8, 20, 2, 1, 0),
        (81.0, [85.0, 80.0, 76.0, 84.0], 0.0, None, 1.0, 12, 0, 0, 0),
        (58.25, [50.0, 60.0, 55.0, 70.0], 0.2, 0.0, 0.5, 10, 2, 0, 1),
    ],
    BASELINE: [
        (40.0, [30.0, 45.0, 35.0, 50.0], 0.5, 0.5, 0.4, 8, 4, 1, 0),
        (55.5, [50.0, 55.0, 58.0, 60.0], 0.25, None, 0.6, 4, 1, 0, 1),
        (60.0, [62.0, 58.0, 57.0, 65.0], None, None, None, 0, 0, 0, 0),
    ],
}


def rubric(task: str, score: float, cats: list[float], rates: tuple[Any, ...], failed: list[dict[str, Any]]) -> dict:
    hallucination, derived_error, coverage, figures, unsupported, wrong, inconsistent = rates
    checks = {name: [] for name in CATEGORIES}
    for check in failed:
        checks[check["category"]].append(check)
    checks["structure_quality"].append(
        {"category": "structure_quality", "name": "headers", "points": 5, "earned": 5.0, "passed": True, "reason": ""}
    )
    weights = {
        "financial_accuracy": 0.25,
        "investment_reasoning": 0.3,
        "technical_depth": 0.25,
        "structure_quality": 0.2,
    }
    return {
        "task": task,
        "score": score,
        "tier": tier_for(score).name,
        "tier_meaning": tier_for(score).meaning,
        "uncapped_score": score,
        "caps": [],
        "categories": {
            name: {"name": name, "weight": weights[name], "score": s, "checks": checks[name], "not_applicable": []}
            for name, s in zip(CATEGORIES, cats, strict=True)
        },
        "fact_check": {
            "figures": figures,
            "counts": {
                "grounded": figures - unsupported - wrong,
                "derived_correct": 0,
                "derived_wrong": wrong,
                "unsupported": unsupported,
            },
            "hallucination_rate": hallucination,
            "derived_error_rate": derived_error,
            "key_fact_coverage": coverage,
            "stated": {"rating": "Buy"},
            "stated_ratings": ["Buy"],
            "engine": {"rating": "Buy"},
            "agreement": {"rating": True},
            "consistency": [
                {"name": "upside_matches_target", "status": "fail", "detail": "upside 12% vs target/price 5%"}
            ]
            * inconsistent,
            "key_facts": [],
        },
    }


def mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 4) if present else None


def summary(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    scores = [r[0] for r in rows]
    mean = statistics.fmean(scores)
    return {
        "outputs": len(rows),
        "mean_score": round(mean, 2),
        "std_score": round(statistics.stdev(scores), 2) if len(scores) > 1 else 0.0,
        "tier": tier_for(mean).name,
        "categories": {name: round(statistics.fmean(r[1][i] for r in rows), 2) for i, name in enumerate(CATEGORIES)},
        "tiers": {t.name: sum(tier_for(s).name == t.name for s in scores) for t in TIERS},
        "hallucination_rate": mean_or_none([r[2] for r in rows]),
        "derived_error_rate": mean_or_none([r[3] for r in rows]),
        "key_fact_coverage": mean_or_none([r[4] for r in rows]),
        "figures": sum(r[5] for r in rows),
        "unsupported": sum(r[6] for r in rows),
        "derived_wrong": sum(r[7] for r in rows),
        "failed_consistency": sum(r[8] for r in rows),
    }


def build_results(*, comparison: bool = True, judge: bool = True) -> dict[str, Any]:
    """A benchmark of two models on three prompts, built the way ``equitune evaluate`` writes it."""
    wacc_check = {
        "category": "financial_accuracy",
        "name": "derived_figures_correct",
        "points": 10,
        "earned": 0.0,
        "passed": False,
        "reason": "WACC stated 7.9% vs engine 8.4%",
    }
    outputs = []
    for model, rows in ANSWERS.items():
        for (pid, _ticker, task, _cond), row in zip(PROMPTS, rows, strict=True):
            failed = [wacc_check] if (model, pid) == (CANDIDATE, "p001") else []
            text = f"# {pid} report by {model}\n\nRating: Buy. <script>alert('x')</script> P/E 28.1x | EV/EBITDA 20x"
            outputs.append(
                {
                    "prompt_id": pid,
                    "model": model,
                    "sample": 0,
                    "text": text,
                    "score": row[0],
                    "tier": tier_for(row[0]).name,
                    "categories": dict(zip(CATEGORIES, row[1], strict=True)),
                    "rubric": rubric(task, row[0], row[1], row[2:], failed),
                    "completion_tokens": 500,
                    "seconds": 4.2,
                    "finish_reason": "stop",
                }
            )
    models = []
    for name, role, runtime, tps in (
        (CANDIDATE, "candidate", "llama.cpp", 112.3),
        (BASELINE, "baseline", "ollama", 250.0),
    ):
        rows = ANSWERS[name]
        models.append(
            {
                "name": name,
                "role": role,
                "runtime": runtime,
                "source": f"/models/{name}.gguf",
                "generation": {
                    "outputs": 3,
                    "prompt_tokens": 3600,
                    "completion_tokens": 1500,
                    "seconds": round(1500 / tps, 3),
                    "tokens_per_s": tps,
                    "truncated": 0,
                },
                "summary": summary(rows),
                "tasks": {task: summary([row]) for (_p, _t, task, _c), row in zip(PROMPTS, rows, strict=True)},
            }
        )
    data: dict[str, Any] = {
        "schema_version": 1,
        "run": "20261126-011500-benchmark",
        "created": "2026-11-26T01:15:00+00:00",
        "mode": "benchmark",
        "settings": {
            "weights": {
                "financial_accuracy": 0.25,
                "investment_reasoning": 0.3,
                "technical_depth": 0.25,
                "structure_quality": 0.2,
            },
            "temperature": 0.0,
            "samples": 1,
            "max_tokens": 768,
            "seed": 0,
            "bootstrap_resamples": 10000,
            "confidence": 0.95,
            "prompts_source": "test split: 3 companies x 3 families (3 prompts)",
        },
        "prompts": [
            {"id": pid, "ticker": t, "task": task, "condition": c, "prompt": f"Write a {task} of {t}.", "system": None}
            for pid, t, task, c in PROMPTS
        ],
        "models": models,
        "outputs": outputs,
        "comparison": None,
        "judge": None,
    }
    if comparison:
        cand = [r[0] for r in ANSWERS[CANDIDATE]]
        base = [r[0] for r in ANSWERS[BASELINE]]
        data["comparison"] = {
            "candidate": CANDIDATE,
            "baseline": BASELINE,
            "prompts": 3,
            "samples": 1,
            "win_rate": 0.6667,
            "wins": 2,
            "losses": 1,
            "ties": 0,
            "mean_delta": 18.75,
            "ci_low": 1.2,
            "ci_high": 32.5,
            "confidence": 0.95,
            "resamples": 10000,
            "categories": {
                "financial_accuracy": {"mean_delta": 21.0, "ci_low": 8.0, "ci_high": 40.0},
                "investment_reasoning": {"mean_delta": 19.0, "ci_low": 2.0, "ci_high": 30.0},
                "technical_depth": {"mean_delta": 16.33, "ci_low": -2.0, "ci_high": 33.0},
                "structure_quality": {"mean_delta": 19.0, "ci_low": 5.0, "ci_high": 28.0},
            },
            "rates": {
                "hallucination_rate": {"candidate": 0.1, "baseline": 0.375},
                "derived_error_rate": {"candidate": 0.125, "baseline": 0.5},
                "key_fact_coverage": {"candidate": 0.7667, "baseline": 0.5},
            },
            "deltas": [
                {"prompt_id": pid, "candidate": c, "baseline": b, "delta": round(c - b, 2)}
                for (pid, *_), c, b in zip(PROMPTS, cand, base, strict=True)
            ],
        }
    if judge:
        data["judge"] = {
            "model": "qwen2.5:7b",
            "runtime": "ollama",
            "scores": [
                {"prompt_id": pid, "model": m, "score_first": 70.0, "score_second": 66.0, "score": 68.0}
                for pid, *_ in PROMPTS
                for m in (CANDIDATE, BASELINE)
            ],
            "summary": {CANDIDATE: 68.0, BASELINE: None},
            "parse_failures": 1,
        }
    return data


@pytest.fixture
def results() -> dict[str, Any]:
    return build_results()


# ------------------------------------------------------------------------------------------------ validation


def test_a_realistic_benchmark_validates(results: dict[str, Any]) -> None:
    parsed = R.validate_results(results)
    assert [m.name for m in parsed.models] == [CANDIDATE, BASELINE]
    assert parsed.models[0].summary.mean_score == 70.58
    assert parsed.models[0].summary.tier == "Good"
    assert parsed.models[1].summary.hallucination_rate == 0.375
    assert parsed.comparison is not None and parsed.comparison.deltas[2].delta == -1.75
    assert parsed.judge is not None and parsed.judge.summary[BASELINE] is None
    assert len(parsed.outputs) == 6
    assert R.SCHEMA_VERSION == 1


def test_validates_a_file_by_path_and_by_string(results: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    assert R.validate_results(path).run == "20261126-011500-benchmark"
    assert R.validate_results(str(path)).mode == "benchmark"
    assert R.validate_results(json.dumps(results)).settings.samples == 1


def test_a_score_mode_run_without_generation_or_comparison_validates() -> None:
    data = build_results(comparison=False, judge=False)
    data["mode"] = "score"
    data["settings"].update(temperature=None, max_tokens=None)
    for model in data["models"]:
        model["generation"] = None
        model["runtime"] = "file"
    for out in data["outputs"]:
        out.update(completion_tokens=None, seconds=None, finish_reason=None)
    parsed = R.validate_results(data)
    assert parsed.comparison is None and parsed.models[0].generation is None


def test_an_empty_summary_has_nulls() -> None:
    data = build_results()
    data["models"][0]["tasks"]["industry_analysis"] = summarise_scores([])
    R.validate_results(data)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets the value at a dotted path (list indices as numbers)."""

    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return apply


FAULTS = [
    (
        _set("models.1.summary.mean_score", 120.5),
        "results.json: models[1].summary.mean_score: Input should be less than or equal to 100 (got 120.5)",
    ),
    (
        _set("models.0.summary.mean_score", "70.58"),
        'results.json: models[0].summary.mean_score: Input should be a valid number (got "70.58")',
    ),
    (_drop("models.0.summary.tier"), "results.json: models[0].summary.tier: Field required"),
    (_set("settings.temprature", 0.7), "results.json: settings.temprature: Extra inputs are not permitted"),
    (_set("outputs.3.score", math.nan), "results.json: outputs[3].score: Input should be a finite number"),
    (_set("outputs.2.prompt_id", "p999"), "results.json: outputs[2].prompt_id: 'p999' is not a prompt id"),
    (
        _set("outputs.0.model", "gpt-x"),
        f"results.json: outputs[0].model: 'gpt-x' is not a listed model ({CANDIDATE}, {BASELINE})",
    ),
    (_set("outputs.4.sample", 1), "results.json: outputs[4].sample: 1 is not below settings.samples"),
    (
        _drop("outputs.1.rubric.fact_check"),
        "results.json: outputs[1].rubric: Value error, the rubric has no 'fact_check'",
    ),
    (_set("outputs.0.tier", "Excellent"), "results.json: outputs[0].tier: 'Excellent' does not match score 72.5"),
    (_set("prompts.2.id", "p001"), "results.json: prompts[2].id: 'p001' repeats prompts[0].id"),
    (_set("prompts.0.task", "valuations"), "results.json: prompts[0].task: Value error, unknown task 'valuations'"),
    (_set("models.1.name", CANDIDATE), f"results.json: models[1].name: '{CANDIDATE}' repeats models[0].name"),
    (_set("models.0.role", "champion"), "results.json: models[0].role: Input should be 'candidate', 'baseline' or"),
    (
        _set("models.0.summary.tiers.Poor", 2),
        "results.json: models[0].summary.tiers: the tier counts add up to 5, not outputs (3)",
    ),
    (
        _set("models.0.tasks.valuations", build_results()["models"][0]["tasks"]["valuation"]),
        "results.json: models[0].tasks: Value error, unknown task(s) valuations",
    ),
    (
        _set("comparison.baseline", "other"),
        f"results.json: comparison.baseline: 'other' is not a listed model ({CANDIDATE}, {BASELINE})",
    ),
    (_set("comparison.ties", 1), "results.json: comparison: wins + losses + ties = 4, not prompts (3)"),
    (
        _set("comparison.deltas.0.delta", 30.0),
        "results.json: comparison.deltas[0].delta: 30.0 is not candidate - baseline (72.5 - 40.0)",
    ),
    (
        _drop("comparison.categories.technical_depth"),
        "results.json: comparison.categories.technical_depth: Field required",
    ),
    (
        _set("judge.summary.mystery", 50.0),
        "results.json: judge.summary[\"mystery\"]: 'mystery' is not a listed model",
    ),
    (_set("created", "26/11/2026"), "results.json: created: Value error, not an ISO 8601 time: '26/11/2026'"),
    (
        _set("settings.weights.structure_quality", 0.5),
        "results.json: settings.weights: Value error, rubric weights must sum to 1",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), FAULTS)
def test_each_fault_is_reported_with_its_json_path(
    results: dict[str, Any], mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    broken = copy.deepcopy(results)
    mutate(broken)
    with pytest.raises(DataError) as caught:
        R.validate_results(broken, source="results.json")
    assert message in str(caught.value)


def test_every_problem_is_listed_and_the_file_is_named(results: dict[str, Any], tmp_path: Path) -> None:
    results["models"][1]["summary"]["mean_score"] = -3.0
    results["outputs"][5]["text"] = 42
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    with pytest.raises(DataError) as caught:
        R.validate_results(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: invalid evaluation results, 2 problem(s):")
    assert f"{path}: models[1].summary.mean_score: Input should be greater than or equal to 0" in text
    assert f"{path}: outputs[5].text: Input should be a valid string (got 42)" in text


def test_unreadable_and_unsupported_documents_are_data_errors(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text('{"schema_version": 1,\n  "run": }', encoding="utf-8")
    with pytest.raises(DataError, match=r"results.json: not valid JSON \(line 2, column 10\)"):
        R.validate_results(bad)
    with pytest.raises(DataError, match="cannot read"):
        R.validate_results(tmp_path / "missing.json")
    with pytest.raises(DataError, match="schema_version 2 is not supported"):
        R.validate_results({**build_results(), "schema_version": 2})
    with pytest.raises(DataError, match="must be a JSON object, got list"):
        R.validate_results([1, 2])  # type: ignore[arg-type]


def test_the_models_agree_with_the_rubric_constants() -> None:
    for model in (R.CategoryScores, R.CategoryMeans, R.CategoryDeltas):
        assert tuple(model.model_fields) == CATEGORIES
    assert tuple(R.TierCounts.model_fields) == tuple(t.name for t in TIERS)
    assert typing.get_args(R.TierName) == tuple(t.name for t in TIERS)
    assert tuple(R.Rates.model_fields) == R.RATE_NAMES


# ------------------------------------------------------------------------------------------------ the views


def test_render_markdown_reports_models_families_comparison_and_judge(results: dict[str, Any]) -> None:
    text = R.render_markdown(results)
    lines = text.splitlines()
    assert lines[0] == "# Evaluation results: 20261126-011500-benchmark"
    assert "| Temperature | 0 |" in lines
    assert "| Bootstrap | 10000 resamples, 95% confidence |" in lines
    # mean 70.58, std of (72.5, 81, 58.25) = 11.49, categories, rates, tokens/s; a file written before the
    # repetition and binding counts shows them as n/a
    assert (
        f"| {CANDIDATE} | candidate | llama.cpp | 3 | 70.6 | 11.5 | Good | 68.3 | 71.7 | 66.3 | 77.3 "
        "| 10.0% | 12.5% | 76.7% | n/a | n/a | 112.3 |"
    ) in lines
    assert f"| {BASELINE} | baseline | ollama | 3 | 51.8 | 10.5 | Acceptable |" in text
    assert f"| Task | {CANDIDATE} | {BASELINE} |" in lines
    assert "| valuation | 72.5 (1) | 40.0 (1) |" in lines
    assert "| executive_summary | 58.2 (1) | 60.0 (1) |" in lines
    assert "- Win rate: 67% (2 wins, 1 losses, 0 ties)." in lines
    assert "- Mean delta: +18.8 points, 95% CI [+1.2, +32.5] (10000 bootstrap resamples)." in lines
    assert "| Technical depth | +16.3 | [-2.0, +33.0] |" in lines
    assert "| Hallucination rate | 10.0% | 37.5% |" in lines
    assert "Judge **qwen2.5:7b** (ollama), 6 scores, 1 unparsed replies." in lines
    assert f"| {BASELINE} | n/a |" in lines
    # The family rows follow the family order, not the prompt order.
    assert text.index("| executive_summary |") < text.index("| valuation |") < text.index("| risk_assessment |")


def test_render_markdown_leaves_out_absent_comparison_and_judge() -> None:
    text = R.render_markdown(build_results(comparison=False, judge=False))
    assert "## Models" in text
    assert "## Comparison" not in text and "## Judge" not in text


def test_render_html_has_charts_tables_and_every_answer_escaped(results: dict[str, Any]) -> None:
    html = R.render_html(results)
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") == 5  # categories, distribution, rates, families, comparison deltas
    assert "Mean score per rubric category" in html and "Distribution of answer scores" in html
    assert "Fact-check rates per model" in html
    assert "18.75 [1.20, 32.50]" in html  # the total delta with its interval, in the error-bar chart
    assert "16.33 [-2.00, 33.00]" in html
    assert html.count("<details><summary>p00") == 3
    assert html.count(f"<details><summary>{CANDIDATE} &middot; sample 0") == 3
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "<script" not in html
    assert "financial_accuracy / derived_figures_correct: WACC stated 7.9% vs engine 8.4%" in html
    assert "consistency / upside_matches_target: upside 12% vs target/price 5%" in html
    assert html.count("Failed checks (0)") == 3 and html.count("Failed checks (1)") == 3
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", html)
    assert "<td>" + CANDIDATE + "</td>" in html and '<td class="num">70.6</td>' in html


def test_render_html_without_comparison_has_no_delta_chart() -> None:
    html = R.render_html(build_results(comparison=False, judge=False))
    assert html.count("<svg") == 4
    assert "<h2>Comparison</h2>" not in html and "<h2>Judge</h2>" not in html


# ------------------------------------------------------------------------------------------------ writing


def test_write_results_writes_the_three_files(results: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "evaluation_results" / "20261126-011500-benchmark"
    paths = R.write_results(out, results)
    assert paths == {"results": out / "results.json", "markdown": out / "summary.md", "html": out / "report.html"}
    raw = paths["results"].read_text(encoding="utf-8")
    assert json.loads(raw) == results
    assert raw.startswith('{\n  "schema_version": 1,')
    assert "| Mean score |" in paths["markdown"].read_text(encoding="utf-8")
    assert "Distribution of answer scores" in paths["html"].read_text(encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.json", "summary.md"]


def test_write_results_writes_nothing_when_invalid(results: dict[str, Any], tmp_path: Path) -> None:
    results["outputs"][0]["model"] = "ghost"
    with pytest.raises(DataError, match=r"results\.json: outputs\[0\]\.model: 'ghost' is not a listed model"):
        R.write_results(tmp_path / "run", results)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ the doc


def _fields(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


@pytest.mark.parametrize(
    "model",
    [
        R.EvaluationResults,
        R.Settings,
        R.Prompt,
        R.ModelResult,
        R.Generation,
        R.Summary,
        R.Output,
        R.Comparison,
        R.Judge,
    ],
)
def test_every_field_is_documented(model: type[BaseModel], repo_root: Path) -> None:
    doc = (repo_root / "docs" / "evaluation_results.md").read_text(encoding="utf-8")
    missing = [name for name in _fields(model) if f"`{name}`" not in doc]
    assert not missing, f"docs/evaluation_results.md does not document {model.__name__} fields {missing}"
    assert f"`schema_version` | integer | always {R.SCHEMA_VERSION}" in doc
