"""Running models on evaluation prompts and comparing them: ``evaluate_model.py`` / ``equitune evaluate``.

One recipe for every mode:

1. prompts: the held-out default set (``equitune.evaluate.prompts``) or a custom file;
2. generate: each model answers every prompt through a ``Runtime`` (Ollama, embedded llama.cpp, or an
   OpenAI-compatible endpoint), greedy by default, ``samples`` answers per prompt when sampling; completion
   tokens and decoding time are kept, so every evaluation reports each runtime's tokens/s;
3. score: the rubric and the numeric fact-check score every answer against the company's data;
4. compare (``benchmark``: a fine-tuned model against its base): per prompt the paired delta of the scores
   (mean over samples), the win rate, and the mean delta with a percentile bootstrap confidence interval over
   prompts (the prompt is the unit resampled, so samples of one prompt never count as independent evidence);
5. optionally an LLM judge scores the answers on the same rubric, with the two answers of a pair shown in both
   orders and the two scores averaged, so a judge's preference for the first (or second) answer cancels out;
6. write ``evaluation_results/<run>/``: results.json (validated against ``equitune.evaluate.results``),
   summary.md and report.html, and record the scores in the model registry for registry versions.

The baseline of a benchmark defaults to the candidate's own base model at the same precision: for a registry
version with a recorded base GGUF (the f16 base the export wrote from the same dequantised weights the adapter
was trained on), that file; otherwise the version's base model by name (or the configured base model for a
model outside the registry). Comparing an f16 fine-tune against a 4-bit base would credit the fine-tune with
the precision; when a version is served at another precision than its recorded base (q8_0 or q4_K_M first in
``export.formats``), a warning says so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import random
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from equitune.errors import EquituneError
from equitune.evaluate.prompts import EvalPrompt, default_prompts, load_prompts
from equitune.evaluate.rubric import RubricScore, score_report
from equitune.evaluate.scoring import ContextSource, mean_rate, paused_gc, summarise_scores
from equitune.evaluate.weights import CATEGORIES, RubricWeights

if TYPE_CHECKING:
    from equitune.config import EquituneConfig
    from equitune.serve.runtime import Generation, Runtime

log = logging.getLogger(__name__)

Mode = Literal["benchmark", "compare", "evaluate"]
Role = Literal["candidate", "baseline", "model"]
Opener = Callable[[str], "Runtime"]


class EvaluationError(EquituneError):
    """An evaluation that cannot run as asked (no models, a model that cannot be opened, ...)."""


@dataclass
class ModelEntry:
    """A model in an evaluation: its display name, what is opened, its role, and (once run) its runtime kind."""

    name: str
    source: str
    role: Role = "model"
    runtime: str | None = None
    registry_version: str | None = None  # "name:tag" when the model is a registry version


@dataclass
class Answer:
    """One generated answer and its score."""

    prompt: EvalPrompt
    model: str
    sample: int
    text: str
    score: RubricScore
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    seconds: float | None = None
    finish_reason: str | None = None
    record_id: str | None = None  # a scored file's own line id (--score), kept for joining back to the input

    def to_dict(self) -> dict[str, Any]:
        rubric = self.score.to_dict(figures=False)
        return {
            "prompt_id": self.prompt.id,
            "model": self.model,
            "sample": self.sample,
            "text": self.text,
            "score": round(self.score.score, 2),
            "tier": self.score.tier,
            "categories": {c.name: round(c.score, 2) for c in self.score.categories},
            "rubric": rubric,
            "completion_tokens": self.completion_tokens,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "finish_reason": self.finish_reason,
        }


@dataclass
class EvaluationRun:
    """A finished evaluation: the results (the results.json document), where they were written, and the answers."""

    results: dict[str, Any]
    out_dir: Path | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)

    @property
    def comparison(self) -> dict[str, Any] | None:
        comparison: dict[str, Any] | None = self.results.get("comparison")
        return comparison


# ------------------------------------------------------------------------------------------------ statistics


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = 10000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling the values with replacement).

    One value gives a zero-width interval at it; none gives (nan, nan)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    if n == 1:
        return float(values[0]), float(values[0])
    rng = random.Random(seed)
    data = list(values)
    means = sorted(sum(rng.choices(data, k=n)) / n for _ in range(resamples))
    alpha = (1 - confidence) / 2
    low = means[max(0, math.floor(alpha * resamples))]
    high = means[min(resamples - 1, math.ceil((1 - alpha) * resamples) - 1)]
    return low, high


def paired_comparison(
    candidate: dict[str, list[RubricScore]],
    baseline: dict[str, list[RubricScore]],
    *,
    candidate_name: str,
    baseline_name: str,
    resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired per-prompt comparison of two models' scores (prompt id -> the scores of its samples).

    The delta of a prompt is the candidate's mean score minus the baseline's; a win is a positive delta, a tie
    a delta under 0.005 points in size. Mean deltas come with a percentile bootstrap interval over prompts."""
    ids = [p for p in candidate if p in baseline and candidate[p] and baseline[p]]
    if not ids:
        raise EvaluationError("no prompt was answered by both models; nothing to compare")

    def mean(scores: list[RubricScore], pick: Callable[[RubricScore], float]) -> float:
        return sum(pick(s) for s in scores) / len(scores)

    def total(s: RubricScore) -> float:
        return s.score

    deltas = []
    for p in ids:
        c, b = mean(candidate[p], total), mean(baseline[p], total)
        deltas.append({"prompt_id": p, "candidate": round(c, 2), "baseline": round(b, 2), "delta": round(c - b, 2)})
    raw = [mean(candidate[p], total) - mean(baseline[p], total) for p in ids]
    wins = sum(d > 0.005 for d in raw)
    losses = sum(d < -0.005 for d in raw)
    low, high = bootstrap_ci(raw, resamples=resamples, confidence=confidence, seed=seed)
    categories = {}
    for name in CATEGORIES:

        def pick(s: RubricScore, name: str = name) -> float:
            return s.category(name).score

        diffs = [mean(candidate[p], pick) - mean(baseline[p], pick) for p in ids]
        c_low, c_high = bootstrap_ci(diffs, resamples=resamples, confidence=confidence, seed=seed)
        categories[name] = {
            "mean_delta": round(statistics.fmean(diffs), 2),
            "ci_low": round(c_low, 2),
            "ci_high": round(c_high, 2),
        }
    rates = {}
    for rate in ("hallucination_rate", "derived_error_rate", "key_fact_coverage"):
        rates[rate] = {
            "candidate": mean_rate([s for p in ids for s in candidate[p]], rate),
            "baseline": mean_rate([s for p in ids for s in baseline[p]], rate),
        }
    return {
        "candidate": candidate_name,
        "baseline": baseline_name,
        "prompts": len(ids),
        "samples": max(len(candidate[p]) for p in ids),
        "win_rate": round(wins / len(ids), 4),
        "wins": wins,
        "losses": losses,
        "ties": len(ids) - wins - losses,
        "mean_delta": round(statistics.fmean(raw), 2),
        "ci_low": round(low, 2),
        "ci_high": round(high, 2),
        "confidence": confidence,
        "resamples": resamples,
        "categories": categories,
        "rates": rates,
        "deltas": deltas,
    }


# ------------------------------------------------------------------------------------------------ generation


def generation_options(config: EquituneConfig, sample: int, samples: int) -> Any:
    """Greedy for one sample; with several, sampling at ``evaluation.temperature`` (0.7 when that is 0) and a
    seed per sample so a rerun draws the same answers. Both apply ``evaluation.repeat_penalty``, the Modelfile's
    default, so a model is judged as it is served (plain greedy decoding sends small models into loops)."""
    from equitune.serve.runtime import GenerationOptions

    ev = config.evaluation
    penalty = ev.repeat_penalty
    if samples <= 1 and ev.temperature == 0:
        return GenerationOptions(max_tokens=ev.max_tokens, temperature=0.0, seed=ev.seed, repeat_penalty=penalty)
    temperature = ev.temperature if ev.temperature > 0 else 0.7
    return GenerationOptions(
        max_tokens=ev.max_tokens, temperature=temperature, top_p=0.95, seed=ev.seed + sample, repeat_penalty=penalty
    )


def generate_answers(
    runtime: Runtime,
    model_name: str,
    prompts: Sequence[EvalPrompt],
    config: EquituneConfig,
    contexts: ContextSource,
    *,
    samples: int = 1,
    weights: RubricWeights | None = None,
    progress: bool = True,
) -> tuple[list[Answer], dict[str, Any]]:
    """Every prompt answered ``samples`` times by ``runtime`` and scored; the answers and the generation totals
    (outputs, prompt and completion tokens, decoding seconds, wall-clock seconds, tokens/s, answers cut at
    max_tokens). The answers are generated ``evaluation.batch_size`` at a time through the runtime's ``chat_many``
    (batched decoding in llama.cpp, concurrent requests to a server)."""
    from equitune.serve.progress import generation_progress
    from equitune.serve.runtime import Message, chat_many

    answers: list[Answer] = []
    totals: dict[str, Any] = {"outputs": 0, "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0, "truncated": 0}
    jobs = [(p, k) for p in prompts for k in range(samples)]
    conversations = []
    for prompt, _ in jobs:
        messages = [Message("user", prompt.prompt)]
        if prompt.system:
            messages.insert(0, Message("system", prompt.system))
        conversations.append(messages)
    options = [generation_options(config, sample, samples) for _, sample in jobs]
    if config.evaluation.grounded:
        from equitune.serve.grounding import accepts_grammar, grounded

        if accepts_grammar(runtime):
            options = [grounded(o, prompt.prompt) for o, (prompt, _) in zip(options, jobs, strict=True)]
        else:
            log.warning("%s cannot apply grounded decoding; %s answers without it", runtime.name, model_name)
    began = time.perf_counter()
    with generation_progress(progress, f"{model_name}: generating", len(jobs)) as update:
        generations = chat_many(
            runtime, conversations, options, batch_size=config.evaluation.batch_size, progress=update
        )
    wall = time.perf_counter() - began
    for (prompt, sample), generation in zip(jobs, generations, strict=True):
        answers.append(
            Answer(
                prompt=prompt,
                model=model_name,
                sample=sample,
                text=generation.text,
                score=_score(generation.text, prompt, contexts, weights),
                completion_tokens=generation.completion_tokens,
                prompt_tokens=generation.prompt_tokens,
                seconds=generation.completion_seconds,
                finish_reason=generation.finish_reason,
            )
        )
        totals["outputs"] += 1
        totals["prompt_tokens"] += generation.prompt_tokens
        totals["completion_tokens"] += generation.completion_tokens
        totals["seconds"] += generation.completion_seconds
        totals["truncated"] += generation.finish_reason == "length"
    totals["wall_seconds"] = round(wall, 3)
    totals["batch_size"] = config.evaluation.batch_size
    totals["aggregate_tokens_per_s"] = round(totals["completion_tokens"] / wall, 2) if wall > 0 else None
    seconds = float(totals["seconds"])
    totals["seconds"] = round(seconds, 3)
    known = seconds > 0 and totals["completion_tokens"] > 0  # a runtime that reports no usage gives no rate
    totals["tokens_per_s"] = round(totals["completion_tokens"] / seconds, 2) if known else None
    return answers, totals


def _score(text: str, prompt: EvalPrompt, contexts: ContextSource, weights: RubricWeights | None) -> RubricScore:
    context = contexts.get(prompt.ticker, prompt.condition)
    with paused_gc():
        if weights is None:
            return score_report(text, prompt.task, context, prompt=prompt.prompt)
        return score_report(text, prompt.task, context, weights, prompt=prompt.prompt)


# ------------------------------------------------------------------------------------------------ the judge

_JUDGE_SYSTEM = (
    "You are a strict reviewer of equity research. Score each answer from 0 to 100 on four criteria: "
    "financial_accuracy (figures match the DATA block, derived figures right), investment_reasoning (explicit "
    "rating, price target with upside, consistent rating, catalysts, risks), technical_depth (DCF, WACC, terminal "
    "value, named peers, sensitivity), structure_quality (headers, bullets, required sections, disclaimer). "
    "Reply with JSON only."
)


def judge_prompt(prompt: EvalPrompt, answers: Sequence[str]) -> str:
    """The judge's request: the task and its data, the answers in the given order, and the reply format."""
    parts = [f"TASK AND DATA:\n{prompt.prompt}"]
    keys = []
    for i, text in enumerate(answers, start=1):
        parts.append(f"ANSWER {i}:\n{text.strip() or '(empty)'}")
        keys.append(
            f'"answer_{i}": {{"financial_accuracy": 0-100, "investment_reasoning": 0-100, '
            f'"technical_depth": 0-100, "structure_quality": 0-100}}'
        )
    parts.append("Reply with one JSON object: {" + ", ".join(keys) + "}")
    return "\n\n".join(parts)


def _first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` that has an ``answer_1`` key (replies often wrap JSON in prose)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "answer_1" in value:
            return value
    return None


def parse_judgement(text: str, answers: int, weights: RubricWeights) -> list[float | None]:
    """The weighted 0-100 score the judge gave each answer (None where its reply has no usable scores)."""
    data = _first_json_object(text)
    out: list[float | None] = []
    for i in range(1, answers + 1):
        entry = data.get(f"answer_{i}") if isinstance(data, dict) else None
        if not isinstance(entry, dict):
            out.append(None)
            continue
        try:
            values = {name: float(entry[name]) for name in CATEGORIES}
        except (KeyError, TypeError, ValueError):
            out.append(None)
            continue
        if not all(0 <= v <= 100 for v in values.values()):
            out.append(None)
            continue
        out.append(round(sum(values[n] * w for n, w in weights.as_dict().items()), 2))
    return out


def run_judge(
    judge: Runtime,
    prompts: Sequence[EvalPrompt],
    answers: Sequence[Answer],
    models: Sequence[str],
    weights: RubricWeights,
    *,
    max_tokens: int = 256,
    batch_size: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Judge scores on the rubric's criteria. Two models: each prompt's pair of first-sample answers is judged
    in both orders and each model's two scores averaged; otherwise each answer is judged alone. Every request
    goes to the judge in one ``chat_many`` call, ``batch_size`` at a time."""
    from equitune.serve.progress import generation_progress
    from equitune.serve.runtime import GenerationOptions, Message, chat_many

    options = GenerationOptions(max_tokens=max_tokens, temperature=0.0, seed=0)
    first = {(a.prompt.id, a.model): a.text for a in answers if a.sample == 0}
    scores: list[dict[str, Any]] = []
    pairs = len(models) == 2
    # Each request: (prompt, the models it scores in the order the judge reads them, their texts).
    requests: list[tuple[EvalPrompt, list[str], list[str]]] = []
    for prompt in prompts:
        texts = [first.get((prompt.id, m)) for m in models]
        if any(t is None for t in texts):
            continue
        present = [t for t in texts if t is not None]
        if pairs:
            requests.append((prompt, list(models), present))
            requests.append((prompt, list(models)[::-1], present[::-1]))
        else:
            requests.extend((prompt, [m], [t]) for m, t in zip(models, present, strict=True))
    conversations = [
        [Message("system", _JUDGE_SYSTEM), Message("user", judge_prompt(prompt, texts))]
        for prompt, _, texts in requests
    ]
    with generation_progress(progress, "judge", len(conversations)) as update:
        replies = chat_many(judge, conversations, options, batch_size=batch_size, progress=update)
    parsed = [parse_judgement(r.text, len(texts), weights) for r, (_, _, texts) in zip(replies, requests, strict=True)]
    failures = sum(any(v is None for v in p) for p in parsed)
    by_prompt: dict[str, dict[str, list[float | None]]] = {}
    for (prompt, order, _), judged_values in zip(requests, parsed, strict=True):
        for model, value in zip(order, judged_values, strict=True):
            by_prompt.setdefault(prompt.id, {}).setdefault(model, []).append(value)
    for prompt in prompts:
        judged = by_prompt.get(prompt.id)
        if judged is None:
            continue
        for model in models:
            given = judged.get(model, [])
            a = given[0] if given else None
            b = given[1] if pairs and len(given) > 1 else None
            # Only the average of both orders cancels the judge's position bias: one order alone is no score.
            both = round((a + b) / 2, 2) if a is not None and b is not None else None
            score = both if pairs else a
            scores.append({"prompt_id": prompt.id, "model": model, "score_first": a, "score_second": b, "score": score})
    # Means over the prompts where every model has a score, so the models are compared on the same prompts.
    scored_by: dict[str, set[str]] = {
        m: {s["prompt_id"] for s in scores if s["model"] == m and s["score"] is not None} for m in models
    }
    common = set.intersection(*scored_by.values()) if scored_by else set()
    summary: dict[str, float | None] = {}
    for model in models:
        values = [s["score"] for s in scores if s["model"] == model and s["prompt_id"] in common]
        summary[model] = round(statistics.fmean(values), 2) if values else None
    return {
        "model": getattr(judge, "model", "judge"),
        "runtime": getattr(judge, "name", None),
        "scores": scores,
        "summary": summary,
        "prompts_scored": len(common),
        "parse_failures": failures,
    }


# ------------------------------------------------------------------------------------------------ the recipe


def evaluate_models(
    config: EquituneConfig,
    models: Sequence[ModelEntry],
    *,
    mode: Mode = "evaluate",
    prompts: Sequence[EvalPrompt] | None = None,
    prompts_file: str | Path | None = None,
    samples: int | None = None,
    judge: str | None = None,
    run_name: str | None = None,
    out_dir: str | Path | None = None,
    opener: Callable[[ModelEntry], Runtime] | None = None,
    judge_opener: Opener | None = None,
    contexts: ContextSource | None = None,
    endpoint: str | None = None,
    progress: bool = True,
    write: bool = True,
    record: bool = True,
) -> EvaluationRun:
    """Generate, score, compare, optionally judge, and write the results (see the module docstring).

    ``opener`` turns a ``ModelEntry`` into a ``Runtime`` (default: ``equitune.serve.factory.open_runtime`` with
    the config's Ollama host, registry and ``evaluation.runtime`` preference). Each model is opened, run over
    every prompt and closed before the next, so only one model is in memory at a time."""
    if not models:
        raise EvaluationError("no model to evaluate")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise EvaluationError(f"a model is listed twice: {', '.join(names)}")
    if mode == "benchmark" and [m.role for m in models] != ["candidate", "baseline"]:
        raise EvaluationError("a benchmark compares exactly one candidate with one baseline")
    ev = config.evaluation
    k = samples if samples is not None else ev.samples
    if k < 1:
        raise EvaluationError(f"--samples must be at least 1, got {k}")
    source = contexts or ContextSource.from_config(config)
    if prompts is None:
        if prompts_file is not None:
            prompts = load_prompts(prompts_file, config, contexts=source)
            prompts_source = f"file {prompts_file} ({len(prompts)} prompts)"
        else:
            prompts = default_prompts(config, contexts=source)
            companies = len({p.ticker for p in prompts})
            prompts_source = (
                f"test split: {companies} companies x {len(ev.families)} families x "
                f"{', '.join(ev.conditions)} ({len(prompts)} prompts"
                + (", closed-book: no DATA block)" if ev.closed_book else ")")
            )
    else:
        prompts_source = f"given ({len(prompts)} prompts)"
    if not prompts:
        raise EvaluationError("no evaluation prompts")
    open_model = opener or _default_opener(config, endpoint)
    weights = ev.weights

    answers: list[Answer] = []
    model_blocks: list[dict[str, Any]] = []
    for entry in models:
        log.info("Evaluating %s (%s) on %d prompts x %d", entry.name, entry.source, len(prompts), k)
        runtime = open_model(entry)
        entry.runtime = getattr(runtime, "name", entry.runtime)
        try:
            got, generation = generate_answers(
                runtime, entry.name, prompts, config, source, samples=k, weights=weights, progress=progress
            )
        finally:
            runtime.close()
        answers.extend(got)
        model_blocks.append(_model_block(entry, got, generation))

    comparison = None
    if mode == "benchmark":
        by_model: dict[str, dict[str, list[RubricScore]]] = {m.name: {} for m in models}
        for a in answers:
            by_model[a.model].setdefault(a.prompt.id, []).append(a.score)
        comparison = paired_comparison(
            by_model[models[0].name],
            by_model[models[1].name],
            candidate_name=models[0].name,
            baseline_name=models[1].name,
            resamples=ev.bootstrap_resamples,
            confidence=ev.confidence,
            seed=ev.seed,
        )

    judged = None
    judge_name = judge if judge is not None else ev.judge
    if judge_name:
        judge_runtime = (judge_opener or (lambda n: open_model(ModelEntry(n, n))))(judge_name)
        try:
            judged = run_judge(
                judge_runtime,
                prompts,
                answers,
                names,
                weights,
                batch_size=config.evaluation.batch_size,
                progress=progress,
            )
        finally:
            judge_runtime.close()

    decoding = {
        "temperature": generation_options(config, 0, k).temperature,
        "repeat_penalty": ev.repeat_penalty,
        "samples": k,
        "max_tokens": ev.max_tokens,
    }
    result = _finish(
        config,
        mode,
        decoding,
        prompts_source,
        [p.to_dict() for p in prompts],
        model_blocks,
        answers,
        comparison=comparison,
        judged=judged,
        run_name=run_name,
        out_dir=out_dir,
        write=write,
    )
    results = result.results
    if record:
        record_scores(config, models, results)
    return result


def _finish(
    config: EquituneConfig,
    mode: str,
    decoding: dict[str, Any],
    prompts_source: str,
    prompts: list[dict[str, Any]],
    model_blocks: list[dict[str, Any]],
    answers: list[Answer],
    *,
    comparison: dict[str, Any] | None = None,
    judged: dict[str, Any] | None = None,
    run_name: str | None = None,
    out_dir: str | Path | None = None,
    write: bool = True,
) -> EvaluationRun:
    """The results.json document of a run (named by ``fresh_run_name``), written with its summary and HTML report
    under ``out_dir`` or ``paths.evaluation_results/<run>`` when ``write``."""
    ev = config.evaluation
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    run = fresh_run_name(config, run_name, f"{created:%Y%m%d-%H%M%S}-{mode}", out_dir)
    results = {
        "schema_version": 1,
        "run": run,
        "created": created.isoformat(),
        "mode": mode,
        "settings": {
            "weights": ev.weights.as_dict(),
            **decoding,
            "seed": ev.seed,
            "bootstrap_resamples": ev.bootstrap_resamples,
            "confidence": ev.confidence,
            "prompts_source": prompts_source,
        },
        "prompts": prompts,
        "models": model_blocks,
        "outputs": [a.to_dict() for a in answers],
        "comparison": comparison,
        "judge": judged,
    }
    result = EvaluationRun(results=results, answers=answers)
    if write:
        from equitune.evaluate.results import write_results

        folder = Path(out_dir) if out_dir else Path(config.paths.evaluation_results) / run
        result.out_dir = folder
        result.paths = write_results(folder, results)
        log.info("Evaluation results written to %s", folder)
    return result


def fresh_run_name(config: EquituneConfig, given: str | None, automatic: str, out_dir: str | Path | None) -> str:
    """The run's folder name under ``paths.evaluation_results``: a given name must not exist yet (results are
    never overwritten); an automatic one gets ``-2``, ``-3`` when two runs start in the same second."""
    root = Path(config.paths.evaluation_results)
    if given is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", given):
            raise EvaluationError(f"run name {given!r}: use letters, digits, '.', '_' and '-' only")
        if out_dir is None and (root / given).exists():
            raise EvaluationError(f"{root / given} already exists; choose another --run name or remove it")
        return given
    name, n = automatic, 2
    while out_dir is None and (root / name).exists():
        name, n = f"{automatic}-{n}", n + 1
    return name


def _model_block(entry: ModelEntry, answers: list[Answer], generation: dict[str, Any] | None) -> dict[str, Any]:
    by_task: dict[str, list[RubricScore]] = {}
    for a in answers:
        by_task.setdefault(a.prompt.task, []).append(a.score)
    return {
        "name": entry.name,
        "role": entry.role,
        "runtime": entry.runtime or "unknown",
        "source": entry.source,
        "generation": generation,
        "summary": summarise_scores([a.score for a in answers]),
        "tasks": {task: summarise_scores(scores) for task, scores in by_task.items()},
    }


def _default_opener(config: EquituneConfig, endpoint: str | None = None) -> Callable[[ModelEntry], Runtime]:
    """Open models with ``open_runtime``: through ``endpoint`` (an OpenAI-compatible server) when given, else
    Ollama or llama.cpp as ``evaluation.runtime`` prefers."""
    from equitune.serve.factory import open_runtime

    prefer = config.evaluation.runtime

    def opener(entry: ModelEntry) -> Runtime:
        return open_runtime(
            entry.source,
            endpoint=endpoint,
            ollama_host=config.export.ollama_host,
            registry=config.paths.registry,
            prefer=prefer,
            n_ctx=config.evaluation.n_ctx,
        )

    return opener


def record_scores(config: EquituneConfig, models: Iterable[ModelEntry], results: dict[str, Any]) -> None:
    """Store each registry version's summary (and its benchmark comparison) in the model registry."""
    from equitune.registry import ModelRegistry, RegistryError

    versions = [m for m in models if m.registry_version]
    if not versions or not Path(config.paths.registry).is_file():
        return
    registry = ModelRegistry(config.paths.registry)
    blocks = {b["name"]: b for b in results["models"]}
    for entry in versions:
        block = blocks[entry.name]
        scores = {
            "run": results["run"],
            "created": results["created"],
            "mode": results["mode"],
            "prompts": len(results["prompts"]),
            "runtime": block["runtime"],
            "tokens_per_s": (block["generation"] or {}).get("tokens_per_s"),
            **{k: block["summary"][k] for k in ("mean_score", "tier", "categories", "hallucination_rate")},
            "derived_error_rate": block["summary"]["derived_error_rate"],
            "key_fact_coverage": block["summary"]["key_fact_coverage"],
        }
        comparison = results.get("comparison")
        if comparison and comparison["candidate"] == entry.name:
            scores["benchmark"] = {
                k: comparison[k] for k in ("baseline", "mean_delta", "ci_low", "ci_high", "win_rate", "prompts")
            }
        try:
            registry.record_evaluation(str(entry.registry_version), scores)
        except RegistryError as exc:
            log.warning("Could not record the scores of %s in the registry: %s", entry.registry_version, exc)


# ------------------------------------------------------------------------------------------------ entry points


def model_entry(config: EquituneConfig, name: str, role: Role = "model") -> ModelEntry:
    """A ``ModelEntry`` for what a user typed: registry versions are recognised (and their scores recorded)."""
    from equitune.registry import ModelRegistry, UnknownModelError

    path = Path(config.paths.registry)
    if path.is_file() and not name.lower().endswith(".gguf"):
        try:
            version = ModelRegistry(path).get(name)
        except UnknownModelError:
            pass
        else:
            return ModelEntry(version.name_tag, name, role, registry_version=version.name_tag)
    return ModelEntry(name, name, role)


def baseline_for(config: EquituneConfig, candidate: ModelEntry) -> ModelEntry:
    """The candidate's base model at the same precision (see the module docstring)."""
    from equitune.registry import ModelRegistry

    if candidate.registry_version:
        version = ModelRegistry(config.paths.registry).get(candidate.registry_version)
        base = version.gguf("base")
        if base is not None and Path(base.path).is_file():
            merged = version.gguf("merged")
            if merged is not None and merged.quant != base.quant:
                log.warning(
                    "%s is served as %s but its recorded base GGUF is %s: the comparison includes the precision "
                    "difference (export f16 for a like-for-like benchmark)",
                    version.name_tag,
                    merged.quant,
                    base.quant,
                )
            return ModelEntry(f"{version.base_model} (base)", base.path, "baseline")
        # No base GGUF recorded: the version's own base model, opened the way any model name is.
        return ModelEntry(f"{version.base_model} (base)", version.base_model, "baseline")
    return ModelEntry(f"{config.model_selection.base_model} (base)", config.model_selection.base_model, "baseline")


def run_benchmark(
    config: EquituneConfig,
    candidate: str,
    *,
    baseline: str | None = None,
    prompts: Sequence[EvalPrompt] | None = None,
    prompts_file: str | Path | None = None,
    samples: int | None = None,
    judge: str | None = None,
    run_name: str | None = None,
    progress: bool = True,
    opener: Callable[[ModelEntry], Runtime] | None = None,
    endpoint: str | None = None,
) -> EvaluationRun:
    """The fine-tuned ``candidate`` against ``baseline`` (default: its own base) on the same prompts."""
    first = model_entry(config, candidate, "candidate")
    second = model_entry(config, baseline, "baseline") if baseline else baseline_for(config, first)
    if second.name == first.name:
        second.name = f"{second.name} (baseline)"
    return evaluate_models(
        config,
        [first, second],
        mode="benchmark",
        prompts=prompts,
        prompts_file=prompts_file,
        samples=samples,
        judge=judge,
        run_name=run_name,
        opener=opener,
        endpoint=endpoint,
        progress=progress,
    )


class EquityResearchEvaluator:
    """Evaluate one model from Python: ``EquityResearchEvaluator("equity_research_llama").comprehensive_evaluation()``.

    ``comprehensive_evaluation(prompts)`` takes ``EvalPrompt`` objects, a prompt file path, or None for the
    held-out default set, and returns the ``EvaluationRun`` (results written under evaluation_results/)."""

    def __init__(
        self,
        model: str,
        config: EquituneConfig | None = None,
        *,
        runtime: Runtime | None = None,
        progress: bool = False,
    ) -> None:
        from equitune.config import EquituneConfig

        self.config = config or EquituneConfig()
        self.model = model
        self.progress = progress
        self._runtime = runtime

    def comprehensive_evaluation(
        self,
        prompts: Sequence[EvalPrompt] | str | Path | None = None,
        *,
        baseline: str | None = None,
        samples: int | None = None,
        write: bool = True,
    ) -> EvaluationRun:
        """Answer and score every prompt; with ``baseline``, a paired benchmark against it."""
        opener = None
        if self._runtime is not None:
            given = self._runtime
            default = _default_opener(self.config)

            def opener(entry: ModelEntry) -> Runtime:
                return _Borrowed(given) if entry.role != "baseline" else default(entry)

            judge_opener: Opener | None = lambda name: default(ModelEntry(name, name))  # noqa: E731
        else:
            judge_opener = None

        listed = None if prompts is None or isinstance(prompts, (str, Path)) else list(prompts)
        file = prompts if isinstance(prompts, (str, Path)) else None
        entry = model_entry(self.config, self.model, "candidate" if baseline else "model")
        models = [entry]
        if baseline is not None:
            models.append(model_entry(self.config, baseline, "baseline"))
        return evaluate_models(
            self.config,
            models,
            mode="benchmark" if baseline else "evaluate",
            prompts=listed,
            prompts_file=file,
            samples=samples,
            opener=opener,
            judge_opener=judge_opener,
            progress=self.progress,
            write=write,
        )


class _Borrowed:
    """A runtime the caller owns: used like any other, but ``close`` leaves it open for the caller."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.name = runtime.name
        self.model = runtime.model

    def chat(self, messages: Any, options: Any = None) -> Generation:
        return self._runtime.chat(messages, options)

    def generate(self, prompt: str, options: Any = None) -> Generation:
        return self._runtime.generate(prompt, options)

    def stream_chat(self, messages: Any, options: Any = None) -> Any:
        return self._runtime.stream_chat(messages, options)

    def chat_many(self, conversations: Any, options: Any = None, *, batch_size: int = 1, progress: Any = None) -> Any:
        from equitune.serve.runtime import chat_many

        return chat_many(self._runtime, conversations, options, batch_size=batch_size, progress=progress)

    def close(self) -> None:
        return None


def score_file_results(
    config: EquituneConfig,
    path: str | Path,
    *,
    run_name: str | None = None,
    contexts: ContextSource | None = None,
    write: bool = True,
) -> EvaluationRun:
    """``equitune evaluate --score FILE``: outputs made elsewhere, scored and written like any evaluation.

    Each line becomes a prompt (its ``id``, else ``line-N``) and an answer of its ``model`` (``(unnamed)``
    when absent); no generation totals are reported because nothing was generated here."""
    from equitune.evaluate.scoring import read_outputs

    source = contexts or ContextSource.from_config(config)
    records = read_outputs(path, source)
    prompts: dict[tuple[str, str, str, str], EvalPrompt] = {}
    answers: list[Answer] = []
    seen_per_model: dict[tuple[str, str], int] = {}
    for record in records:
        key = (record.ticker, record.task, record.condition, record.prompt)
        prompt = prompts.get(key)
        record_id = record.id or f"line-{record.line}"
        if prompt is None:
            prompt = EvalPrompt(record_id, record.ticker, record.task, record.condition, record.prompt, None)
            prompts[key] = prompt
        model = record.model or "(unnamed)"
        sample = seen_per_model.get((prompt.id, model), 0)
        seen_per_model[(prompt.id, model)] = sample + 1
        score = _score(record.output, prompt, source, config.evaluation.weights)
        answers.append(Answer(prompt, model, sample, record.output, score, record_id=record_id))
    models = sorted({a.model for a in answers})
    blocks = [
        _model_block(ModelEntry(m, str(path), "model", runtime="file"), [a for a in answers if a.model == m], None)
        for m in models
    ]
    decoding = {"temperature": None, "samples": max(seen_per_model.values()), "max_tokens": None}
    return _finish(
        config,
        "score",
        decoding,
        f"scored file {path} ({len(records)} lines)",
        [p.to_dict() for p in prompts.values()],
        blocks,
        answers,
        run_name=run_name,
        out_dir=None if write else "",  # not written: no folder to keep clear
        write=write,
    )
