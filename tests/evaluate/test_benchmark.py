"""Held-out prompts, paired statistics, the judge, and whole evaluations against stand-in runtimes."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from equitune.config import EquituneConfig
from equitune.data.generator import EquityResearchTrainingDataGenerator
from equitune.errors import DataError
from equitune.evaluate.benchmark import (
    EquityResearchEvaluator,
    EvaluationError,
    EvaluationRun,
    ModelEntry,
    bootstrap_ci,
    evaluate_models,
    fresh_run_name,
    paired_comparison,
    parse_judgement,
    run_benchmark,
)
from equitune.evaluate.prompts import EvalPrompt, PromptFileError, default_prompts, held_out_tickers, load_prompts
from equitune.evaluate.scoring import ContextSource
from equitune.evaluate.weights import DEFAULT_WEIGHTS
from equitune.registry import ModelRegistry, ModelVersion
from equitune.serve.runtime import Generation, GenerationOptions, Message


class ScriptedRuntime:
    """A runtime whose answer to a prompt is ``answer(user_text)``; counts calls and records options."""

    def __init__(self, model: str, answer: Callable[[str], str], tokens_per_s: float = 100.0) -> None:
        self.name = "scripted"
        self.model = model
        self.answer = answer
        self.tokens_per_s = tokens_per_s
        self.calls: list[tuple[list[Message], GenerationOptions | None]] = []
        self.closed = False

    def chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Generation:
        self.calls.append((list(messages), options))
        text = self.answer(messages[-1].content)
        tokens = max(1, len(text) // 4)
        return Generation(text, self.model, self.name, 100, tokens, 0.1, tokens / self.tokens_per_s)

    def generate(self, prompt: str, options: GenerationOptions | None = None) -> Generation:
        return self.chat([Message("user", prompt)], options)

    def stream_chat(self, messages: Sequence[Message], options: GenerationOptions | None = None):  # type: ignore[no-untyped-def]
        yield self.chat(messages, options).text

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def contexts() -> ContextSource:
    return ContextSource.from_config(EquituneConfig())


@pytest.fixture(scope="module")
def config() -> EquituneConfig:
    return EquituneConfig.model_validate({"evaluation": {"max_prompts": 6, "bootstrap_resamples": 2000}})


def reference_answers(prompts: Sequence[EvalPrompt]) -> dict[str, str]:
    return {p.prompt: str(p.reference) for p in prompts}


# -------------------------------------------------------------------------------------------------- prompts


def test_default_prompts_are_test_split_companies_in_every_family(
    contexts: ContextSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no generated data here: the split comes from the configuration
    config = EquituneConfig()
    prompts = default_prompts(config, contexts=contexts)
    generator = EquityResearchTrainingDataGenerator(config)
    split = generator.split_of()
    tickers = {p.ticker for p in prompts}
    assert (
        tickers
        == {t for t, part in split.items() if part == "test"}
        == set(held_out_tickers(config, contexts.tickers()))
    )
    assert len(tickers) == 7 and len(prompts) == 7 * 6
    assert {p.task for p in prompts} == set(config.evaluation.families)
    assert all("\n\nDATA\n" in p.prompt and p.reference for p in prompts)
    assert [p.prompt for p in default_prompts(config, contexts=contexts)] == [p.prompt for p in prompts]  # stable
    assert len({p.id for p in prompts}) == len(prompts)


def test_max_prompts_spreads_over_families(contexts: ContextSource) -> None:
    config = EquituneConfig.model_validate({"evaluation": {"max_prompts": 6}})
    prompts = default_prompts(config, contexts=contexts)
    assert len(prompts) == 6 and len({p.task for p in prompts}) == 6


def test_prompt_files_jsonl_and_text(tmp_path: Path, contexts: ContextSource) -> None:
    config = EquituneConfig()
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        json.dumps({"ticker": "AAPL", "task": "valuation", "prompt": "Value Apple."})
        + "\n"
        + json.dumps({"ticker": "nvda", "task": "risk_assessment", "prompt": "Risks?", "condition": "recession"})
        + "\n"
    )
    got = load_prompts(jsonl, config, contexts=contexts)
    assert [(p.ticker, p.task, p.condition, p.prompt) for p in got] == [
        ("AAPL", "valuation", "base", "Value Apple."),
        ("NVDA", "risk_assessment", "recession", "Risks?"),
    ]
    text = tmp_path / "p.txt"
    text.write_text("# comment\nAAPL valuation\nAAPL valuation\n\nNVDA executive_summary risk_off: Is it a buy?\n")
    got = load_prompts(text, config, contexts=contexts)
    assert [p.id for p in got] == ["AAPL-valuation-base", "AAPL-valuation-base-2", "NVDA-executive_summary-risk_off"]
    assert got[0].prompt.startswith(("Value", "Estimate", "Build", "Run", "Prepare", "Produce", "What"))
    assert "DATA" in got[0].prompt and got[2].prompt.startswith("Is it a buy?\n\nDATA\n")


def test_bad_prompt_lines_are_all_reported(tmp_path: Path, contexts: ContextSource) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"ticker": "APPL", "task": "valuation", "prompt": "x"}\n'
        "not json\n"
        '{"ticker": "AAPL", "task": "poetry", "prompt": "x", "colour": 1}\n'
        '{"ticker": "AAPL", "task": "valuation", "prompt": "x", "id": "a"}\n'
        '{"ticker": "AAPL", "task": "valuation", "prompt": "y", "id": "a"}\n'
    )
    with pytest.raises(PromptFileError) as err:
        load_prompts(bad, EquituneConfig(), contexts=contexts)
    message = str(err.value)
    for expected in ("line 1: ticker", "AAPL", "line 2: (json)", "line 3: task", "line 3: colour", "line 5: id"):
        assert expected in message
    text = tmp_path / "bad.txt"
    text.write_text("AAPL\nZZZZ valuation\n")
    with pytest.raises(DataError, match=r"(?s)line 1: \(line\).*line 2: ticker"):
        load_prompts(text, EquituneConfig(), contexts=contexts)


# -------------------------------------------------------------------------------------------------- statistics


def test_bootstrap_interval() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    low, high = bootstrap_ci(values, resamples=5000, seed=1)
    assert low < statistics.fmean(values) < high
    assert 3.0 < low < 4.6 and 6.4 < high < 8.0  # the mean's standard error is about 0.9
    assert bootstrap_ci([4.0, 4.0, 4.0]) == (4.0, 4.0)
    assert bootstrap_ci([2.5]) == (2.5, 2.5)
    wider = bootstrap_ci(values, resamples=5000, seed=1, confidence=0.99)
    assert wider[0] <= low and wider[1] >= high


def test_paired_comparison_counts_and_interval(config: EquituneConfig, contexts: ContextSource) -> None:
    prompts = default_prompts(config, contexts=contexts)
    good = ScriptedRuntime("good", reference_answers(prompts).__getitem__)
    run = evaluate_models(
        config,
        [ModelEntry("good", "good", "candidate"), ModelEntry("terse", "terse", "baseline")],
        mode="benchmark",
        prompts=prompts,
        contexts=contexts,
        opener=lambda e: good if e.name == "good" else ScriptedRuntime("terse", lambda _: "Buy."),
        write=False,
        record=False,
        progress=False,
    )
    c = run.results["comparison"]
    assert c["prompts"] == 6 and c["wins"] == 6 and c["losses"] == 0 and c["win_rate"] == 1.0
    deltas = [d["delta"] for d in c["deltas"]]
    assert c["mean_delta"] == pytest.approx(statistics.fmean(deltas), abs=0.01)
    assert 0 < c["ci_low"] <= c["mean_delta"] <= c["ci_high"]
    assert set(c["categories"]) == set(DEFAULT_WEIGHTS.as_dict())
    assert c["rates"]["hallucination_rate"]["candidate"] == 0.0
    good_block = run.results["models"][0]
    assert good_block["summary"]["mean_score"] >= 80 and good_block["summary"]["tier"] == "Excellent"
    assert good_block["generation"]["tokens_per_s"] == pytest.approx(100.0, rel=0.02)
    assert good.closed


def test_paired_comparison_needs_shared_prompts() -> None:
    with pytest.raises(EvaluationError, match="both models"):
        paired_comparison({"a": []}, {"b": []}, candidate_name="x", baseline_name="y")


# -------------------------------------------------------------------------------------------------- decoding


def test_greedy_by_default_and_seeded_samples(config: EquituneConfig, contexts: ContextSource) -> None:
    prompts = default_prompts(config, contexts=contexts)[:2]
    runtime = ScriptedRuntime("m", lambda _: "Hold.")
    evaluate_models(
        config,
        [ModelEntry("m", "m")],
        prompts=prompts,
        contexts=contexts,
        opener=lambda e: runtime,
        write=False,
        record=False,
        progress=False,
    )
    assert [o.temperature for _, o in runtime.calls if o] == [0.0, 0.0]
    assert runtime.calls[0][0][0].role == "system"
    sampled = ScriptedRuntime("m", lambda _: "Hold.")
    run = evaluate_models(
        config,
        [ModelEntry("m", "m")],
        prompts=prompts,
        contexts=contexts,
        opener=lambda e: sampled,
        samples=3,
        write=False,
        record=False,
        progress=False,
    )
    options = [o for _, o in sampled.calls if o]
    assert len(options) == 6 and {o.temperature for o in options} == {0.7}
    assert [o.seed for o in options[:3]] == [0, 1, 2]
    assert run.results["settings"]["samples"] == 3 and len(run.results["outputs"]) == 6


# -------------------------------------------------------------------------------------------------- the judge


def test_parse_judgement() -> None:
    reply = (
        'Scores: {"answer_1": {"financial_accuracy": 80, "investment_reasoning": 60, "technical_depth": 40, '
        '"structure_quality": 100}, "answer_2": {"financial_accuracy": "n/a"}}'
    )
    assert parse_judgement(reply, 2, DEFAULT_WEIGHTS) == [pytest.approx(0.25 * 80 + 0.3 * 60 + 0.25 * 40 + 20), None]
    assert parse_judgement("no json here", 1, DEFAULT_WEIGHTS) == [None]


def _judged_benchmark(
    config: EquituneConfig, prompts: Sequence[EvalPrompt], contexts: ContextSource, judge_reply: Callable[[str], str]
) -> EvaluationRun:
    """A benchmark of two models giving the same answer, judged by a stand-in that replies with ``judge_reply``."""
    same = ScriptedRuntime("a", lambda _: "Rating: Hold.")
    return evaluate_models(
        config,
        [ModelEntry("a", "a", "candidate"), ModelEntry("b", "b", "baseline")],
        mode="benchmark",
        prompts=prompts,
        contexts=contexts,
        opener=lambda e: same,
        judge="judge",
        judge_opener=lambda name: ScriptedRuntime(name, judge_reply),
        write=False,
        record=False,
        progress=False,
    )


def test_judge_order_swap_cancels_position_bias(config: EquituneConfig, contexts: ContextSource) -> None:
    """A judge that always gives the first answer 20 points more must score two equal answers equally."""
    prompts = default_prompts(config, contexts=contexts)[:3]

    def biased(_: str) -> str:
        block = {"financial_accuracy": 50, "investment_reasoning": 50, "technical_depth": 50, "structure_quality": 50}
        first = {k: v + 20 for k, v in block.items()}
        return json.dumps({"answer_1": first, "answer_2": block})

    run = _judged_benchmark(config, prompts, contexts, biased)
    judged = run.results["judge"]
    assert judged["summary"] == {"a": 60.0, "b": 60.0}
    assert {s["score_first"] for s in judged["scores"]} == {70.0, 50.0}
    assert judged["parse_failures"] == 0 and len(judged["scores"]) == 6


# -------------------------------------------------------------------------------------------------- whole runs


def test_benchmark_writes_results_and_records_registry_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contexts: ContextSource
) -> None:
    monkeypatch.chdir(tmp_path)
    config = EquituneConfig.model_validate({"evaluation": {"max_prompts": 6, "bootstrap_resamples": 500}})
    prompts = default_prompts(config, contexts=contexts)
    base_gguf = tmp_path / "base-f16.gguf"
    base_gguf.write_bytes(b"GGUF")
    merged = tmp_path / "m.gguf"
    merged.write_bytes(b"GGUF")
    registry = ModelRegistry(config.paths.registry)
    from equitune.registry import GGUFFile

    registry.register(
        ModelVersion(
            name="equity_research_llama",
            base_model="smollm2:135m",
            tag="v1",
            gguf_files=(GGUFFile.from_path(merged, "merged", "f16"), GGUFFile.from_path(base_gguf, "base", "f16")),
        )
    )
    opened: list[str] = []

    def opener(entry: ModelEntry) -> ScriptedRuntime:
        opened.append(entry.source)
        if entry.role == "candidate":
            return ScriptedRuntime(entry.name, reference_answers(prompts).__getitem__)
        return ScriptedRuntime(entry.name, lambda _: "I think it is a good company. Buy.")

    run = run_benchmark(config, "equity_research_llama", prompts=prompts, opener=opener, progress=False)
    assert opened == ["equity_research_llama", str(base_gguf)]  # the base at the same precision
    assert [m["name"] for m in run.results["models"]] == ["equity_research_llama:v1", "smollm2:135m (base)"]
    assert run.out_dir is not None and run.out_dir.resolve().parent == (tmp_path / "evaluation_results").resolve()
    saved = json.loads((run.out_dir / "results.json").read_text())
    assert saved["comparison"]["mean_delta"] == run.results["comparison"]["mean_delta"] > 0
    assert (run.out_dir / "summary.md").is_file() and (run.out_dir / "report.html").is_file()
    scores = registry.get("equity_research_llama:v1").evaluation_scores
    assert scores["mean_score"] == run.results["models"][0]["summary"]["mean_score"]
    assert scores["benchmark"]["mean_delta"] == run.results["comparison"]["mean_delta"]


def test_evaluator_from_python(config: EquituneConfig, contexts: ContextSource) -> None:
    prompts = default_prompts(config, contexts=contexts)[:2]
    runtime = ScriptedRuntime("mine", reference_answers(prompts).__getitem__)
    run = EquityResearchEvaluator("mine", config, runtime=runtime).comprehensive_evaluation(prompts, write=False)
    assert run.results["mode"] == "evaluate" and len(run.results["outputs"]) == 2
    assert all(o["score"] >= 80 for o in run.results["outputs"])
    assert not runtime.closed  # the caller's runtime stays open


def test_benchmark_needs_candidate_and_baseline(config: EquituneConfig) -> None:
    with pytest.raises(EvaluationError, match="exactly one candidate"):
        evaluate_models(config, [ModelEntry("a", "a")], mode="benchmark", write=False)
    with pytest.raises(EvaluationError, match="twice"):
        evaluate_models(config, [ModelEntry("a", "a"), ModelEntry("a", "b")], write=False)


@pytest.mark.slow
def test_evaluate_the_embedded_model_with_llama_cpp(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("llama_cpp")
    from equitune.cli import main

    args = ["--set", "evaluation.max_prompts=2", "--set", "evaluation.max_tokens=48", "--no-progress", "--json"]
    code = main(["evaluate", "smollm2:135m", *args])
    results = json.loads(capsys.readouterr().out)
    assert code == 0
    (model,) = results["models"]
    assert model["runtime"] == "llama.cpp" and model["generation"]["outputs"] == 2
    assert model["generation"]["completion_tokens"] > 0 and model["generation"]["tokens_per_s"] > 0
    assert (in_tmp / "evaluation_results" / results["run"] / "report.html").is_file()


def test_held_out_companies_follow_the_generated_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contexts: ContextSource
) -> None:
    """Data generated with another seed has other test companies; the prompts follow what the data recorded."""
    monkeypatch.chdir(tmp_path)
    config = EquituneConfig.model_validate({"data": {"seed": 7, "num_examples": 30}})
    generator = EquityResearchTrainingDataGenerator(config)
    generator.generate_dynamic_training_examples(30)
    generator.save()
    recorded = json.loads((tmp_path / "training_data" / "stats.json").read_text())["companies"]["test"]
    default_seed = EquituneConfig()  # seed 42: alone it would give another split
    from equitune.data.generator import split_companies

    by_seed_42 = sorted(t for t, part in split_companies(contexts.tickers(), 42, 0.8, 0.1).items() if part == "test")
    assert sorted(recorded) != by_seed_42
    assert held_out_tickers(default_seed, contexts.tickers()) == sorted(recorded)
    (tmp_path / "training_data" / "stats.json").write_text('{"companies": {"test": "AAPL"}}')
    with pytest.raises(DataError, match="companies.test"):
        held_out_tickers(default_seed, contexts.tickers())


def test_explicit_prompt_ids_are_kept(tmp_path: Path, contexts: ContextSource) -> None:
    file = tmp_path / "p.jsonl"
    file.write_text(
        json.dumps({"ticker": "AAPL", "task": "valuation", "prompt": "a"})
        + "\n"
        + json.dumps({"ticker": "AAPL", "task": "valuation", "prompt": "b", "id": "AAPL-valuation-base"})
        + "\n"
    )
    got = load_prompts(file, EquituneConfig(), contexts=contexts)
    assert [(p.id, p.prompt) for p in got] == [("AAPL-valuation-base-2", "a"), ("AAPL-valuation-base", "b")]


def test_judge_needs_both_orders(config: EquituneConfig, contexts: ContextSource) -> None:
    prompts = default_prompts(config, contexts=contexts)[:2]
    replies = iter(
        [
            '{"answer_1": {"financial_accuracy": 80, "investment_reasoning": 80, "technical_depth": 80, '
            '"structure_quality": 80}, "answer_2": {"financial_accuracy": 40, "investment_reasoning": 40, '
            '"technical_depth": 40, "structure_quality": 40}}',
            "I cannot score these.",
        ]
        * 2
    )
    run = _judged_benchmark(config, prompts, contexts, lambda _: next(replies))
    judged = run.results["judge"]
    assert all(s["score"] is None for s in judged["scores"])  # one order alone is no score
    assert judged["summary"] == {"a": None, "b": None} and judged["prompts_scored"] == 0
    assert judged["parse_failures"] == 2


def test_run_folders_are_never_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = EquituneConfig()
    (tmp_path / "evaluation_results" / "mine").mkdir(parents=True)
    (tmp_path / "evaluation_results" / "auto").mkdir()
    with pytest.raises(EvaluationError, match="already exists"):
        fresh_run_name(config, "mine", "auto", None)
    with pytest.raises(EvaluationError, match="letters"):
        fresh_run_name(config, "../x", "auto", None)
    assert fresh_run_name(config, None, "auto", None) == "auto-2"
    assert fresh_run_name(config, "new", "auto", None) == "new"


def test_score_refuses_generation_flags(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from equitune.cli import main

    (in_tmp / "o.jsonl").write_text("{}\n")
    assert main(["evaluate", "--score", "o.jsonl", "--judge", "m"]) == 1
    assert "--judge" in capsys.readouterr().err
    assert main(["evaluate", "m", "--baseline", "b"]) == 1
    assert "--benchmark" in capsys.readouterr().err
    assert main(["evaluate", "m", "--benchmark", "--endpoint", "http://127.0.0.1:9/v1"]) == 1
    assert "--baseline" in capsys.readouterr().err


def test_closed_book_prompts_have_no_data_block(
    contexts: ContextSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    grounded = default_prompts(EquituneConfig.model_validate({"evaluation": {"max_prompts": 6}}), contexts=contexts)
    config = EquituneConfig.model_validate({"evaluation": {"max_prompts": 6, "closed_book": True}})
    closed = default_prompts(config, contexts=contexts)
    assert [c.prompt for c in closed] == [g.prompt.split("\n\nDATA\n")[0] for g in grounded]
    assert all("DATA" not in c.prompt and c.id.endswith("-closed") for c in closed)
