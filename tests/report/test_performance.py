"""The workflow's performance report: the numbers it shows come from the files and results it is given, both
models' answers appear side by side, and the HTML refers to nothing outside itself."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from equitune.report.charts import _bin_counts
from equitune.report.performance import (
    SCORE_BINS,
    answer_scores,
    example_prompts,
    format_headline,
    headline_numbers,
    loss_series,
    tier_verdict,
    write_performance_report,
)

CANDIDATE, BASELINE = "equity_research_llama:v1", "smollm2:135m"
CATEGORIES = {"financial_accuracy": 0, "investment_reasoning": 0, "technical_depth": 0, "structure_quality": 0}
# prompt id -> (candidate score, baseline score): deltas +20, +5, 0, -7
SCORES = {"p001": (75.0, 55.0), "p002": (60.0, 55.0), "p003": (50.0, 50.0), "p004": (45.0, 52.0)}


def _summary(mean: float, tier: str, cats: list[float], rates: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "outputs": 4,
        "mean_score": mean,
        "std_score": 9.1,
        "tier": tier,
        "categories": dict(zip(CATEGORIES, cats, strict=True)),
        "tiers": {"Excellent": 0, "Good": 1, "Acceptable": 2, "Poor": 1},
        "hallucination_rate": rates[0],
        "derived_error_rate": rates[1],
        "key_fact_coverage": rates[2],
        "figures": 120,
        "unsupported": 9,
        "derived_wrong": 2,
        "failed_consistency": 0,
    }


def make_results(*, with_comparison: bool = True) -> dict[str, Any]:
    """A benchmark results dict in the documented schema, built by hand."""
    prompts = [
        {
            "id": pid,
            "ticker": ticker,
            "task": task,
            "condition": "base",
            "prompt": f"Write the {task} of {ticker}. PROMPT-{pid}",
            "system": None,
        }
        for pid, ticker, task in (
            ("p001", "AAPL", "valuation"),
            ("p002", "MSFT", "executive_summary"),
            ("p003", "XOM", "risk_assessment"),
            ("p004", "KO", "investment_thesis"),
        )
    ]
    outputs = []
    for pid, (cand, base) in SCORES.items():
        for model, score in ((CANDIDATE, cand), (BASELINE, base)):
            outputs.append(
                {
                    "prompt_id": pid,
                    "model": model,
                    "sample": 0,
                    "text": f"ANSWER-{model}-{pid} <b>rating</b> Buy",
                    "score": score,
                    "tier": "Acceptable",
                    "categories": dict.fromkeys(CATEGORIES, score),
                    "rubric": {},
                    "completion_tokens": 300,
                    "seconds": 2.0,
                    "finish_reason": "stop",
                }
            )
    generation = {
        "outputs": 4,
        "prompt_tokens": 4000,
        "completion_tokens": 1200,
        "seconds": 10.0,
        "tokens_per_s": 112.3,
        "truncated": 1,
    }
    comparison = {
        "candidate": CANDIDATE,
        "baseline": BASELINE,
        "prompts": 4,
        "samples": 1,
        "win_rate": 0.625,
        "wins": 2,
        "losses": 1,
        "ties": 1,
        "mean_delta": 4.5,
        "ci_low": -3.25,
        "ci_high": 13.5,
        "confidence": 0.95,
        "resamples": 10000,
        "categories": {
            c: {"mean_delta": 2.0 + i, "ci_low": -1.0 + i, "ci_high": 5.0 + i} for i, c in enumerate(CATEGORIES)
        },
        "rates": {"hallucination_rate": {"candidate": 0.05, "baseline": 0.2}},
        "deltas": [{"prompt_id": pid, "candidate": c, "baseline": b, "delta": c - b} for pid, (c, b) in SCORES.items()],
    }
    return {
        "schema_version": 1,
        "run": "20261126-011500-benchmark",
        "created": "2026-11-26T01:15:00+00:00",
        "mode": "benchmark",
        "settings": {"confidence": 0.95, "bootstrap_resamples": 10000, "prompts_source": "test split: 4 prompts"},
        "prompts": prompts,
        "models": [
            {
                "name": CANDIDATE,
                "role": "candidate",
                "runtime": "llama.cpp",
                "source": None,
                "generation": generation,
                "summary": _summary(57.5, "Acceptable", [61.0, 58.0, 52.0, 70.0], (0.05, 0.02, 0.6)),
                "tasks": {},
            },
            {
                "name": BASELINE,
                "role": "baseline",
                "runtime": "llama.cpp",
                "source": None,
                "generation": {**generation, "tokens_per_s": 140.0},
                "summary": _summary(53.0, "Acceptable", [50.0, 49.0, 45.0, 66.0], (0.2, 0.1, 0.4)),
                "tasks": {},
            },
        ],
        "outputs": outputs,
        "comparison": comparison if with_comparison else None,
        "judge": None,
    }


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A training run folder (metrics, report), a data folder (stats.json) and an evaluation folder."""
    run = tmp_path / "finetuned_models" / "equity_research_llama"
    run.mkdir(parents=True)
    lines = [{"step": 0, "epoch": 0.0, "val_loss": 3.5, "elapsed_s": 0.1}]
    for step in range(1, 7):
        lines.append({"step": step, "epoch": step / 6, "loss": 4.0 - 0.25 * step, "lr": 1e-4, "tokens": 100 * step})
        if step % 3 == 0:
            lines.append({"step": step, "epoch": step / 6, "val_loss": 3.5 - 0.2 * step, "elapsed_s": step})
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    (run / "training_report.json").write_text(
        json.dumps(
            {
                "base_model": BASELINE,
                "backend": "transformers",
                "precision": "fp32",
                "examples": {"train": 40, "valid": 6},
                "steps": 6,
                "total_steps": 6,
                "epochs": 1.0,
                "tokens": 600,
                "tokens_per_s": 1234.5,
                "wall_time_s": 12.0,
                "trainable_parameters": 4096,
                "train_loss_first": 3.75,
                "train_loss_last": 2.5,
                "val_loss_before": 3.5,
                "val_loss_after": 2.3,
                "best_val_loss": 2.3,
                "best_step": 6,
                "stopped_early": False,
            }
        ),
        encoding="utf-8",
    )
    data = tmp_path / "training_data"
    data.mkdir()
    stats = {
        "examples": 52,
        "splits": {"train": 40, "valid": 6, "test": 6},
        "companies": {"train": ["AAPL", "MSFT"], "valid": ["JNJ"], "test": ["KO", "XOM"]},
        "families": {"valuation": 30, "risk_assessment": 22},
        "sectors": {"Information Technology": 40, "Energy": 12},
        "ratings": {"Buy": 18, "Hold": 17, "Sell": 17},
        "conditions": {"base": 52},
        "response_tokens": {"min": 80, "p50": 250, "p90": 400, "max": 512, "mean": 260.5},
        "figures_checked": 777,
        "unsupported_figures": 0,
        "near_duplicates": {"threshold": 0.8, "count": 3, "pairs": []},
    }
    (data / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
    evaluation = tmp_path / "evaluation_results" / "20261126-011500-benchmark"
    evaluation.mkdir(parents=True)
    (evaluation / "results.json").write_text("{}", encoding="utf-8")
    (evaluation / "summary.md").write_text("# summary\n", encoding="utf-8")
    (evaluation / "report.html").write_text("<html></html>", encoding="utf-8")
    return run, data, evaluation


def _write(tmp_path: Path, inputs: tuple[Path, Path, Path], results: dict[str, Any], **kw: Any) -> dict[str, Path]:
    run, data, evaluation = inputs
    return write_performance_report(
        tmp_path / "finetuning_workflow",
        training_dir=run,
        data_dir=data,
        results=results,
        export_info=kw.get(
            "export_info",
            {"name_tag": CANDIDATE, "created_in_ollama": False, "export_dir": str(run / "export" / "v1")},
        ),
        evaluation_dir=evaluation,
    )


def test_report_shows_the_numbers_of_the_benchmark_training_and_data(
    tmp_path: Path, inputs: tuple[Path, Path, Path]
) -> None:
    paths = _write(tmp_path, inputs, make_results())
    assert paths["html"] == tmp_path / "finetuning_workflow" / "report.html"
    assert paths["markdown"] == tmp_path / "finetuning_workflow" / "report.md"
    page = paths["html"].read_text(encoding="utf-8")
    markdown = paths["markdown"].read_text(encoding="utf-8")
    for text in (page, markdown):
        # headline: both means, the delta with its CI, the win rate
        assert "57.5" in text and "53.0" in text
        assert "+4.5" in text and "-3.2" in text and "+13.5" in text  # -3.25 rounds half to even
        assert "62.5%" in text and "2 wins, 1 loss, 1 tie" in text
        # the tier verdict and what the CI says
        assert "Tier: Acceptable" in text and "needs substantial editing" in text
        assert "includes zero" in text
        # benchmark table: sub-scores, fact-check rates and speed of both models
        assert "61.0" in text and "50.0" in text  # financial accuracy, candidate and base
        assert "5.0%" in text and "20.0%" in text and "-15.0 pts" in text  # hallucination rates and difference
        assert "112.30" in text or "112.3" in text
        # training: steps, losses; data: splits, figures checked
        assert "3.7500 → 2.5000" in text and "3.5000 → 2.3000" in text
        assert "777" in text and "Near-duplicate responses across splits: 3" in text
        assert "valuation" in text and "risk_assessment" in text
        # the three example prompts (largest +20, median, smallest -7) with both answers
        for pid in ("p001", "p004"):
            assert f"ANSWER-{CANDIDATE}-{pid}" in text and f"ANSWER-{BASELINE}-{pid}" in text
            assert f"PROMPT-{pid}" in text
        assert "+20.0 points" in text and "-7.0 points" in text
        # the model is served by the embedded runtime when Ollama did not create it
        assert f"equitune chat {CANDIDATE}" in text
    # every chart is there, inline in the HTML and as a file for the Markdown
    assert page.count("<svg") == 5
    for name in ("loss_curves", "sub_scores", "fact_check", "score_deltas", "score_distribution"):
        assert (paths["charts"] / f"{name}.svg").is_file()
        assert f"report_files/{name}.svg" in markdown
    # links to the evaluation folder, relative
    assert 'href="../evaluation_results/20261126-011500-benchmark/results.json"' in page
    assert "](../evaluation_results/20261126-011500-benchmark/report.html)" in markdown
    assert "](../evaluation_results/20261126-011500-benchmark/summary.md)" in markdown
    assert "report.md" not in markdown.split("## Files", 1)[1]  # the evaluation folder holds no report.md


def test_a_zero_score_counts_in_the_score_distribution(tmp_path: Path, inputs: tuple[Path, Path, Path]) -> None:
    results = make_results()
    results["outputs"][0]["score"] = 0.0  # the candidate's answer to p001
    scores = answer_scores(results)
    assert list(scores) == [f"base ({BASELINE})", f"fine-tuned ({CANDIDATE})"]
    assert sorted(scores[f"fine-tuned ({CANDIDATE})"]) == [0.0, 45.0, 50.0, 60.0]
    assert _bin_counts(scores[f"fine-tuned ({CANDIDATE})"], list(SCORE_BINS)) == [1, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert sum(_bin_counts(scores[f"base ({BASELINE})"], list(SCORE_BINS))) == 4
    # every answer scored 0: the chart is still drawn
    for output in results["outputs"]:
        output["score"] = 0
    assert all(values == [0.0] * 4 for values in answer_scores(results).values())
    paths = _write(tmp_path, inputs, results)
    assert (paths["charts"] / "score_distribution.svg").is_file()


def test_a_split_with_no_companies_shows_zero(tmp_path: Path, inputs: tuple[Path, Path, Path]) -> None:
    stats_path = inputs[1] / "stats.json"
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    stats["splits"]["valid"] = 0
    stats["companies"]["valid"] = []
    del stats["companies"]["test"]
    stats_path.write_text(json.dumps(stats), encoding="utf-8")
    markdown = _write(tmp_path, inputs, make_results())["markdown"].read_text(encoding="utf-8")
    assert "| valid | 0 | 0 |" in markdown
    assert "| test | 6 | n/a |" in markdown


def test_loss_curves_come_from_metrics_jsonl(tmp_path: Path, inputs: tuple[Path, Path, Path]) -> None:
    series = loss_series(inputs[0])
    assert series["training loss"] == [(float(s), 4.0 - 0.25 * s) for s in range(1, 7)]
    assert series["validation loss"] == [(0.0, 3.5), (3.0, pytest.approx(2.9)), (6.0, pytest.approx(2.3))]
    page = _write(tmp_path, inputs, make_results())["html"].read_text(encoding="utf-8")
    loss_svg = page.split("Training and validation loss", 1)[1]
    assert "<polyline" in loss_svg and "validation loss" in loss_svg


def test_html_is_offline_and_escapes_model_text(tmp_path: Path, inputs: tuple[Path, Path, Path]) -> None:
    results = make_results()
    results["outputs"][0]["text"] = '<script>alert("x")</script><img src="https://example.com/a.png">'
    page = _write(tmp_path, inputs, results)["html"].read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "<link" not in page.lower() and "@import" not in page and "url(" not in page
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page, flags=re.IGNORECASE)
    assert refs and not [r for r in refs if r.startswith(("http:", "https:", "//"))]
    assert "&lt;script&gt;" in page  # the answer is shown, as text


def test_examples_are_the_largest_median_and_smallest_delta() -> None:
    assert example_prompts(make_results()) == [
        ("p001", "largest gain", 20.0),
        ("p003", "median", 0.0),
        ("p004", "smallest gain", -7.0),
    ]
    # without a comparison block the deltas are paired from the outputs
    assert [p for p, _, _ in example_prompts(make_results(with_comparison=False))] == ["p001", "p003", "p004"]
    two = make_results()
    two["comparison"]["deltas"] = two["comparison"]["deltas"][:2]
    assert [p for p, _, _ in example_prompts(two)] == ["p001", "p002"]


def test_headline_and_verdict() -> None:
    headline = headline_numbers(make_results())
    assert headline["candidate"] == CANDIDATE and headline["baseline"] == BASELINE
    assert (headline["candidate_mean"], headline["baseline_mean"]) == (57.5, 53.0)
    assert (headline["mean_delta"], headline["ci_low"], headline["ci_high"]) == (4.5, -3.25, 13.5)
    assert headline["candidate_tier"] == "Acceptable" and headline["win_rate"] == 0.625
    line = format_headline(headline)
    assert "57.5 (Acceptable) vs base smollm2:135m: 53.0" in line
    assert "mean delta +4.5 points (95% CI -3.2 to +13.5)" in line and "win rate 62.5%" in line
    better = {**headline, "candidate_mean": 82.0, "ci_low": 1.0, "ci_high": 9.0}
    assert tier_verdict(better) == [
        "Tier: Excellent (mean score 82.0; Excellent is 80 to 100): production ready.",
        "Better than its base: the 95% confidence interval of the mean delta (+1.0 to +9.0) lies above zero.",
    ]
    worse = {**headline, "candidate_mean": 40.0, "ci_low": -9.0, "ci_high": -1.0}
    assert tier_verdict(worse)[0].startswith("Tier: Poor (mean score 40.0; Poor is 0 to 50): not usable")
    assert tier_verdict(worse)[1].startswith("Worse than its base")


def test_report_without_comparison_or_training_files_still_renders(tmp_path: Path) -> None:
    results = make_results(with_comparison=False)
    paths = write_performance_report(
        tmp_path / "wf",
        training_dir=tmp_path / "missing-run",
        data_dir=tmp_path / "missing-data",
        results=results,
        export_info=None,
    )
    page = paths["html"].read_text(encoding="utf-8")
    assert "No paired comparison with the base model is available." in page
    assert "no data" in page  # the empty loss chart says so
    assert f"ANSWER-{CANDIDATE}-p001" in page
