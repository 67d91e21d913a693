"""The data contract of evaluation results (``results.json``), its validation, and its Markdown and HTML views.

``equitune evaluate`` writes one folder per run under ``evaluation_results/``: ``results.json`` (this schema,
documented field by field in ``docs/evaluation_results.md``), ``summary.md`` and ``report.html``. The pydantic
models below are the schema: every object whose keys are fixed forbids unknown keys, every score is a 0-100
number and every rate a 0-1 fraction or null. ``validate_results`` adds the checks that span objects (every
output names a listed prompt and model, tier counts add up, ...) and reports every problem with its JSON path.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from equitune.data.families import FAMILY_IDS
from equitune.errors import DataError
from equitune.evaluate.weights import CATEGORIES, TIERS, RubricWeights, tier_for
from equitune.io import atomic_write_text
from equitune.report import charts
from equitune.report.html import Raw, esc, markdown_table, page, pre, section, table

__all__ = [
    "SCHEMA_VERSION",
    "CategoryDelta",
    "CategoryDeltas",
    "CategoryMeans",
    "CategoryScores",
    "Comparison",
    "EvaluationResults",
    "Generation",
    "Judge",
    "JudgeScore",
    "ModelResult",
    "Output",
    "Prompt",
    "PromptDelta",
    "RatePair",
    "Rates",
    "Settings",
    "Summary",
    "TierCounts",
    "render_html",
    "render_markdown",
    "validate_results",
    "write_results",
]

SCHEMA_VERSION = 1

Score = Annotated[float, Field(ge=0.0, le=100.0)]
Delta = Annotated[float, Field(ge=-100.0, le=100.0)]
Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]
Name = Annotated[str, Field(min_length=1)]
TierName = Literal["Excellent", "Good", "Acceptable", "Poor"]
Mode = Literal["benchmark", "compare", "evaluate", "score"]
Role = Literal["candidate", "baseline", "model"]

RATE_NAMES: tuple[str, ...] = ("hallucination_rate", "derived_error_rate", "key_fact_coverage")
CATEGORY_TITLES: dict[str, str] = {
    "financial_accuracy": "Financial accuracy",
    "investment_reasoning": "Investment reasoning",
    "technical_depth": "Technical depth",
    "structure_quality": "Structure quality",
}
RATE_TITLES: dict[str, str] = {
    "hallucination_rate": "Hallucination rate",
    "derived_error_rate": "Derived-error rate",
    "key_fact_coverage": "Key-fact coverage",
}


class _Strict(BaseModel):
    # Strict types (no "61.2" -> 61.2 coercion, no bool as int), no unknown keys, no NaN or infinity.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Settings(_Strict):
    """How the run generated and scored: rubric weights, decoding settings and the bootstrap's parameters."""

    weights: RubricWeights = Field(description="Weights of the four rubric categories (sum to 1).")
    temperature: Annotated[float, Field(ge=0.0)] | None = Field(
        description="Sampling temperature (0 = greedy); null in score mode, where nothing is generated."
    )
    repeat_penalty: Annotated[float, Field(ge=0.0)] | None = Field(
        None, description="Repeat penalty applied while generating (1.0 = none); null in score mode."
    )
    samples: Annotated[int, Field(ge=1)] = Field(description="Answers per prompt and model.")
    max_tokens: Annotated[int, Field(ge=1)] | None = Field(description="Completion token limit; null in score mode.")
    seed: int | None = Field(description="Seed of sampling and of the bootstrap; null when none was set.")
    bootstrap_resamples: Annotated[int, Field(ge=1)] = Field(description="Bootstrap resamples of the comparison.")
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(description="Confidence level of the intervals.")
    prompts_source: str = Field(description="Where the prompts came from, in words.")


class Prompt(_Strict):
    """One evaluation prompt: the company, task family and market condition it asks about, and its text."""

    id: Name = Field(description="Identifier, unique within the run.")
    ticker: str = Field(description="Ticker of the company the prompt is about.")
    task: str = Field(description="Task family id (one of equitune.data.families.FAMILY_IDS).")
    condition: str = Field(description="Market-condition variant of the data block (e.g. base).")
    prompt: str = Field(description="The user message sent to the model.")
    system: str | None = Field(description="The system message; null when none was sent.")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in FAMILY_IDS:
            raise ValueError(f"unknown task '{value}' (expected one of {', '.join(FAMILY_IDS)})")
        return value


class Generation(_Strict):
    """Generation totals of one model over all its answers."""

    outputs: Count = Field(description="Answers generated.")
    prompt_tokens: Count = Field(description="Prompt tokens over all answers.")
    completion_tokens: Count = Field(description="Completion tokens over all answers.")
    seconds: Annotated[float, Field(ge=0.0)] = Field(description="Decoding seconds over all answers.")
    tokens_per_s: Annotated[float, Field(ge=0.0)] | None = Field(
        description="completion_tokens / seconds; null when no decoding time was measured."
    )
    truncated: Count = Field(description="Answers cut at max_tokens (finish_reason 'length').")
    wall_seconds: Annotated[float, Field(ge=0.0)] | None = Field(
        default=None, description="Wall-clock seconds of the whole generation (the answers overlap when batched)."
    )
    batch_size: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Answers generated at once (evaluation.batch_size)."
    )
    aggregate_tokens_per_s: Annotated[float, Field(ge=0.0)] | None = Field(
        default=None, description="completion_tokens / wall_seconds: the throughput of the batch as a whole."
    )


class CategoryScores(_Strict):
    """The four rubric category scores (0-100) of one answer."""

    financial_accuracy: Score
    investment_reasoning: Score
    technical_depth: Score
    structure_quality: Score


class CategoryMeans(_Strict):
    """The mean of each rubric category over a set of answers; null when the set is empty."""

    financial_accuracy: Score | None
    investment_reasoning: Score | None
    technical_depth: Score | None
    structure_quality: Score | None


class TierCounts(_Strict):
    """How many answers fell in each tier."""

    Excellent: Count
    Good: Count
    Acceptable: Count
    Poor: Count


class Summary(_Strict):
    """Scores and fact-check totals of a model over its answers (or over the answers of one task family)."""

    outputs: Count = Field(description="Answers summarised.")
    mean_score: Score | None = Field(description="Mean total score; null when outputs is 0.")
    std_score: Annotated[float, Field(ge=0.0)] | None = Field(
        description="Sample standard deviation of the scores (0 for one answer); null when outputs is 0."
    )
    tier: TierName | None = Field(description="Tier of the mean score; null when outputs is 0.")
    categories: CategoryMeans = Field(description="Mean score per rubric category.")
    tiers: TierCounts = Field(description="Answers per tier; the counts add up to outputs.")
    hallucination_rate: Rate | None = Field(description="Mean per-answer unsupported / all figures.")
    derived_error_rate: Rate | None = Field(description="Mean per-answer derived-wrong / derived figures.")
    key_fact_coverage: Rate | None = Field(description="Mean per-answer share of the task's key facts stated.")
    figures: Count = Field(description="Numeric figures found in all answers.")
    unsupported: Count = Field(description="Figures that match neither the data nor an engine output.")
    derived_wrong: Count = Field(description="Figures that state an engine output with the wrong value.")
    failed_consistency: Count = Field(description="Internal-consistency checks that failed.")
    misbound: Count | None = Field(
        default=None, description="Figures stated for a quantity in a unit it never has; null in older files."
    )
    unattributed: Count | None = Field(
        default=None, description="Figures bound to no quantity (checked by value alone); null in older files."
    )
    repetition: Rate | None = Field(
        default=None, description="Mean per-answer repetition (repeated lines or word 5-grams); null in older files."
    )
    repetitive: Count | None = Field(
        default=None, description="Answers whose repetition caps them at Poor; null in older files."
    )


class ModelResult(_Strict):
    """One evaluated model: what was run, its generation totals, and its summary overall and per task family."""

    name: Name = Field(description="Display name, unique within the run; outputs refer to it.")
    role: Role = Field(description="candidate or baseline in a comparison, else model.")
    runtime: Name = Field(description="Runtime that generated (llama.cpp, ollama, openai) or file in score mode.")
    source: str | None = Field(description="What was opened: a path, an Ollama name or an endpoint; null if unknown.")
    generation: Generation | None = Field(description="Generation totals; null in score mode.")
    summary: Summary = Field(description="Summary over all the model's answers.")
    tasks: dict[str, Summary] = Field(description="Summary per task family present among the prompts.")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: dict[str, Summary]) -> dict[str, Summary]:
        unknown = [t for t in value if t not in FAMILY_IDS]
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)} (expected {', '.join(FAMILY_IDS)})")
        return value


class Output(_Strict):
    """One answer of one model to one prompt, its score and the rubric's full account of it."""

    prompt_id: Name = Field(description="The prompt answered (an id in prompts).")
    model: Name = Field(description="The model that answered (a name in models).")
    sample: Count = Field(description="Sample index, 0 to settings.samples - 1.")
    text: str = Field(description="The generated answer.")
    score: Score = Field(description="Total rubric score.")
    tier: TierName = Field(description="Tier of the score.")
    categories: CategoryScores = Field(description="Score per rubric category.")
    rubric: dict[str, Any] = Field(description="RubricScore.to_dict(figures=False): every check and the fact-check.")
    completion_tokens: Count | None = Field(description="Completion tokens; null when not generated here.")
    seconds: Annotated[float, Field(ge=0.0)] | None = Field(description="Decoding seconds; null when not generated.")
    finish_reason: str | None = Field(description="Why generation stopped (stop, length); null when unknown.")

    @field_validator("rubric")
    @classmethod
    def _rubric_parts(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("categories", "fact_check"):
            if key not in value:
                raise ValueError(f"the rubric has no '{key}'")
            if not isinstance(value[key], dict):
                raise ValueError(f"rubric '{key}' must be an object, got {type(value[key]).__name__}")
        return value


class CategoryDelta(_Strict):
    """Mean paired delta of one category (candidate - baseline) and its bootstrap interval."""

    mean_delta: Delta
    ci_low: Delta
    ci_high: Delta


class CategoryDeltas(_Strict):
    """The paired delta of each rubric category."""

    financial_accuracy: CategoryDelta
    investment_reasoning: CategoryDelta
    technical_depth: CategoryDelta
    structure_quality: CategoryDelta


class RatePair(_Strict):
    """One fact-check rate of the candidate and of the baseline over the compared prompts."""

    candidate: Rate | None
    baseline: Rate | None


class Rates(_Strict):
    """The three fact-check rates of both models."""

    hallucination_rate: RatePair
    derived_error_rate: RatePair
    key_fact_coverage: RatePair


class PromptDelta(_Strict):
    """One prompt's paired scores (means over samples) and their difference."""

    prompt_id: Name
    candidate: Score
    baseline: Score
    delta: Delta


class Comparison(_Strict):
    """Paired comparison of a candidate with a baseline over the prompts both answered."""

    candidate: Name = Field(description="Name of the candidate model.")
    baseline: Name = Field(description="Name of the baseline model.")
    prompts: Count = Field(description="Prompts compared (answered by both).")
    samples: Annotated[int, Field(ge=1)] = Field(description="Most samples per prompt and model.")
    win_rate: Rate = Field(description="wins / prompts.")
    wins: Count = Field(description="Prompts with a positive delta.")
    losses: Count = Field(description="Prompts with a negative delta.")
    ties: Count = Field(description="Prompts with a delta under 0.005 points in size.")
    mean_delta: Delta = Field(description="Mean per-prompt delta of the total score.")
    ci_low: Delta = Field(description="Lower bound of the bootstrap interval of mean_delta.")
    ci_high: Delta = Field(description="Upper bound of the bootstrap interval of mean_delta.")
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(description="Confidence level of the intervals.")
    resamples: Annotated[int, Field(ge=1)] = Field(description="Bootstrap resamples.")
    categories: CategoryDeltas = Field(description="Paired delta per rubric category.")
    rates: Rates = Field(description="Fact-check rates of both models.")
    deltas: list[PromptDelta] = Field(description="Per-prompt paired scores.")


class JudgeScore(_Strict):
    """The judge's score of one model's answer to one prompt, in each presentation order."""

    prompt_id: Name
    model: Name
    score_first: Score | None
    score_second: Score | None
    score: Score | None


class Judge(_Strict):
    """Scores from an LLM judge on the rubric's criteria."""

    model: Name = Field(description="The judge model.")
    runtime: str | None = Field(description="The judge's runtime; null when unknown.")
    scores: list[JudgeScore] = Field(description="Judge scores per prompt and model.")
    summary: dict[str, Score | None] = Field(description="Mean judge score per model; null when none parsed.")
    prompts_scored: Count | None = Field(
        None, description="Prompts on which every model has a judge score (the summary averages over these)."
    )
    parse_failures: Count = Field(description="Judge replies that gave no usable score for at least one answer.")


class EvaluationResults(_Strict):
    """The whole ``results.json`` document of one evaluation run."""

    schema_version: Literal[1] = Field(description="Version of this schema (1).")
    run: Name = Field(description="Name of the run: its folder under evaluation_results/.")
    created: str = Field(description="ISO 8601 time the run finished, with a UTC offset.")
    mode: Mode = Field(description="benchmark, compare, evaluate or score.")
    settings: Settings
    prompts: list[Prompt]
    models: Annotated[list[ModelResult], Field(min_length=1)]
    outputs: list[Output]
    comparison: Comparison | None = Field(description="Paired comparison; null when two models were not compared.")
    judge: Judge | None = Field(description="LLM-judge scores; null when no judge was used.")

    @field_validator("created")
    @classmethod
    def _iso_time(cls, value: str) -> str:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"the time has no UTC offset: {value!r}")
        return value


# ------------------------------------------------------------------------------------------------ validation

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a JSON path: ``models[1].summary.mean_score``, ``tasks["odd key"]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "(document)"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_problems(error: ValidationError) -> list[str]:
    problems = []
    for err in error.errors(include_url=False):
        message = err["msg"]
        if err["type"] not in ("missing", "extra_forbidden") and not isinstance(err.get("input"), (dict, list)):
            message += f" (got {_shown(err.get('input'))})"
        problems.append(f"{_path(tuple(err['loc']))}: {message}")
    return problems


def _tier_matches(tier: str, score: float) -> bool:
    # Tiers are taken from unrounded scores; a score stored to 2 decimals may sit just across a boundary.
    return tier in {tier_for(max(0.0, min(100.0, score + d))).name for d in (-0.01, 0.0, 0.01)}


def _summary_problems(where: str, summary: Summary) -> list[str]:
    problems = []
    tiers_total = sum(getattr(summary.tiers, t.name) for t in TIERS)
    if tiers_total != summary.outputs:
        problems.append(f"{where}.tiers: the tier counts add up to {tiers_total}, not outputs ({summary.outputs})")
    empty = summary.outputs == 0
    for name in ("mean_score", "std_score", "tier"):
        if (getattr(summary, name) is None) != empty:
            state = "null" if empty else "a value"
            problems.append(f"{where}.{name}: must be {state} when outputs is {summary.outputs}")
    for name in CATEGORIES:
        if (getattr(summary.categories, name) is None) != empty:
            state = "null" if empty else "a value"
            problems.append(f"{where}.categories.{name}: must be {state} when outputs is {summary.outputs}")
    if summary.repetitive is not None and summary.repetitive > summary.outputs:
        problems.append(f"{where}.repetitive: {summary.repetitive} exceeds outputs ({summary.outputs})")
    if (
        summary.mean_score is not None
        and summary.tier is not None
        and not _tier_matches(summary.tier, summary.mean_score)
    ):
        expected = tier_for(summary.mean_score).name
        problems.append(f"{where}.tier: '{summary.tier}' does not match mean_score {summary.mean_score} ({expected})")
    for name in ("unsupported", "derived_wrong", "misbound", "unattributed"):
        if (getattr(summary, name) or 0) > summary.figures:
            problems.append(f"{where}.{name}: {getattr(summary, name)} exceeds figures ({summary.figures})")
    return problems


def _cross_problems(results: EvaluationResults) -> list[str]:
    """Problems that span objects: references between prompts, models, outputs, comparison and judge."""
    problems: list[str] = []
    prompt_ids: dict[str, int] = {}
    for i, prompt in enumerate(results.prompts):
        if prompt.id in prompt_ids:
            problems.append(f"prompts[{i}].id: '{prompt.id}' repeats prompts[{prompt_ids[prompt.id]}].id")
        else:
            prompt_ids[prompt.id] = i
    model_index: dict[str, int] = {}
    for i, model in enumerate(results.models):
        if model.name in model_index:
            problems.append(f"models[{i}].name: '{model.name}' repeats models[{model_index[model.name]}].name")
        else:
            model_index[model.name] = i
        problems += _summary_problems(f"models[{i}].summary", model.summary)
        for task, summary in model.tasks.items():
            problems += _summary_problems(f"models[{i}].tasks.{task}", summary)
        per_task = sum(s.outputs for s in model.tasks.values())
        if model.tasks and per_task != model.summary.outputs:
            problems.append(
                f"models[{i}].tasks: the task summaries count {per_task} outputs, the summary {model.summary.outputs}"
            )
    models_list = ", ".join(model_index)
    seen: dict[tuple[str, str, int], int] = {}
    per_model: dict[str, int] = defaultdict(int)
    for i, out in enumerate(results.outputs):
        if out.prompt_id not in prompt_ids:
            problems.append(f"outputs[{i}].prompt_id: '{out.prompt_id}' is not a prompt id")
        if out.model not in model_index:
            problems.append(f"outputs[{i}].model: '{out.model}' is not a listed model ({models_list})")
        if out.sample >= results.settings.samples:
            problems.append(f"outputs[{i}].sample: {out.sample} is not below settings.samples")
        key = (out.prompt_id, out.model, out.sample)
        if key in seen:
            problems.append(f"outputs[{i}]: repeats outputs[{seen[key]}] (same prompt_id, model and sample)")
        seen.setdefault(key, i)
        per_model[out.model] += 1
        if not _tier_matches(out.tier, out.score):
            problems.append(f"outputs[{i}].tier: '{out.tier}' does not match score {out.score}")
    for i, model in enumerate(results.models):
        if per_model[model.name] != model.summary.outputs:
            problems.append(
                f"models[{i}].summary.outputs: {model.summary.outputs}, but outputs holds {per_model[model.name]} "
                f"answers of '{model.name}'"
            )
    comp = results.comparison
    if comp is not None:
        for name in ("candidate", "baseline"):
            value = getattr(comp, name)
            if value not in model_index:
                problems.append(f"comparison.{name}: '{value}' is not a listed model ({models_list})")
        if comp.candidate == comp.baseline:
            problems.append("comparison.baseline: the baseline is the candidate")
        decided = comp.wins + comp.losses + comp.ties
        if decided != comp.prompts:
            problems.append(f"comparison: wins + losses + ties = {decided}, not prompts ({comp.prompts})")
        if len(comp.deltas) != comp.prompts:
            problems.append(f"comparison.deltas: {len(comp.deltas)} entries for {comp.prompts} prompts")
        if comp.ci_low > comp.ci_high:
            problems.append(f"comparison.ci_low: {comp.ci_low} is above ci_high ({comp.ci_high})")
        for name in CATEGORIES:
            cat = getattr(comp.categories, name)
            if cat.ci_low > cat.ci_high:
                problems.append(f"comparison.categories.{name}.ci_low: {cat.ci_low} is above ci_high ({cat.ci_high})")
        delta_ids: set[str] = set()
        for j, d in enumerate(comp.deltas):
            if d.prompt_id not in prompt_ids:
                problems.append(f"comparison.deltas[{j}].prompt_id: '{d.prompt_id}' is not a prompt id")
            if d.prompt_id in delta_ids:
                problems.append(f"comparison.deltas[{j}].prompt_id: '{d.prompt_id}' appears twice")
            delta_ids.add(d.prompt_id)
            if abs(d.candidate - d.baseline - d.delta) > 0.015:
                problems.append(
                    f"comparison.deltas[{j}].delta: {d.delta} is not candidate - baseline "
                    f"({d.candidate} - {d.baseline})"
                )
    judge = results.judge
    if judge is not None:
        for j, s in enumerate(judge.scores):
            if s.prompt_id not in prompt_ids:
                problems.append(f"judge.scores[{j}].prompt_id: '{s.prompt_id}' is not a prompt id")
            if s.model not in model_index:
                problems.append(f"judge.scores[{j}].model: '{s.model}' is not a listed model ({models_list})")
        for name in judge.summary:
            if name not in model_index:
                problems.append(f"judge.summary[{json.dumps(name)}]: '{name}' is not a listed model ({models_list})")
    return problems


def _fail(source: str, problems: list[str]) -> DataError:
    shown = problems[:100]
    more = f"\n  ... and {len(problems) - 100} more" if len(problems) > 100 else ""
    lines = "\n".join(f"  {source}: {p}" for p in shown)
    return DataError(f"{source}: invalid evaluation results, {len(problems)} problem(s):\n{lines}{more}")


def validate_results(data: dict[str, Any] | str | Path, *, source: str | None = None) -> EvaluationResults:
    """Validate an evaluation-results document and return it as ``EvaluationResults``.

    ``data`` is the parsed document, a path to ``results.json`` (a ``str`` is read as a path unless it starts with
    ``{``, then it is JSON text). Raises ``DataError`` listing every problem as ``<file>: <json path>: <message>``
    (the file is ``source``, else the path, else ``results``): schema errors first, then the cross-checks (unique
    prompt ids and model names, outputs that name a known prompt and a listed model, comparison and judge models
    that are listed, tier counts that add up).
    """
    if isinstance(data, Path) or (isinstance(data, str) and not data.lstrip().startswith("{")):
        path = Path(data)
        name = source or str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(f"{name}: cannot read evaluation results: {exc.strerror or exc}") from exc
    elif isinstance(data, str):
        name, text = source or "results", data
    else:
        name, text = source or "results", None
    if text is not None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{name}: evaluation results must be a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION and isinstance(version, int) and not isinstance(version, bool):
        raise DataError(f"{name}: schema_version {version} is not supported (this version reads {SCHEMA_VERSION})")
    try:
        results = EvaluationResults.model_validate(data)
    except ValidationError as exc:
        raise _fail(name, _schema_problems(exc)) from None
    problems = _cross_problems(results)
    if problems:
        raise _fail(name, problems)
    return results


def _as_results(results: EvaluationResults | dict[str, Any]) -> EvaluationResults:
    return results if isinstance(results, EvaluationResults) else validate_results(results)


# ------------------------------------------------------------------------------------------------ formatting


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _signed(value: float) -> str:
    return f"{value:+.1f}"


def _rate_of(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value * 100


def generation_rate(generation: dict[str, Any] | None) -> float | None:
    """The tokens/s a run's length depends on: the aggregate rate of a batched run (completion tokens / wall
    seconds), else the decoding rate of one answer after another (files written before batching)."""
    if not generation:
        return None
    rate = generation.get("aggregate_tokens_per_s")
    return rate if rate is not None else generation.get("tokens_per_s")


def _model_rows(results: EvaluationResults) -> tuple[list[str], list[list[object]]]:
    headers = [
        "Model",
        "Role",
        "Runtime",
        "Outputs",
        "Mean score",
        "Std",
        "Tier",
        *(CATEGORY_TITLES[c] for c in CATEGORIES),
        *(RATE_TITLES[r] for r in RATE_NAMES),
        "Repetition",
        "Misbound / unattributed",
        "Tokens/s",
    ]
    rows: list[list[object]] = []
    for m in results.models:
        s = m.summary
        tps = generation_rate(m.generation.model_dump()) if m.generation is not None else None
        rows.append(
            [
                m.name,
                m.role,
                m.runtime,
                s.outputs,
                _score(s.mean_score),
                _score(s.std_score),
                s.tier or "n/a",
                *(_score(getattr(s.categories, c)) for c in CATEGORIES),
                *(_pct(getattr(s, r)) for r in RATE_NAMES),
                _pct(s.repetition),
                "n/a" if s.misbound is None else f"{s.misbound} / {s.unattributed} of {s.figures}",
                "n/a" if tps is None else f"{tps:.1f}",
            ]
        )
    return headers, rows


def _task_rows(results: EvaluationResults) -> tuple[list[str], list[list[object]]]:
    present = [t for t in FAMILY_IDS if any(t in m.tasks for m in results.models)]
    headers = ["Task", *(m.name for m in results.models)]
    rows: list[list[object]] = []
    for task in present:
        row: list[object] = [task]
        for m in results.models:
            s = m.tasks.get(task)
            row.append("n/a" if s is None or s.mean_score is None else f"{s.mean_score:.1f} ({s.outputs})")
        rows.append(row)
    return headers, rows


def _settings_rows(results: EvaluationResults) -> list[list[object]]:
    st = results.settings
    weights = ", ".join(f"{name} {value:.2f}" for name, value in st.weights.as_dict().items())
    return [
        ["Mode", results.mode],
        ["Created", results.created],
        ["Prompts", f"{len(results.prompts)} ({st.prompts_source})"],
        ["Samples per prompt", st.samples],
        ["Temperature", "n/a" if st.temperature is None else f"{st.temperature:g}"],
        ["Repeat penalty", "n/a" if st.repeat_penalty is None else f"{st.repeat_penalty:g}"],
        ["Max tokens", "n/a" if st.max_tokens is None else st.max_tokens],
        ["Seed", "n/a" if st.seed is None else st.seed],
        ["Bootstrap", f"{st.bootstrap_resamples} resamples, {st.confidence:.0%} confidence"],
        ["Rubric weights", weights],
    ]


def _comparison_lines(comp: Comparison) -> list[str]:
    return [
        f"- Candidate **{comp.candidate}** against baseline **{comp.baseline}** over {comp.prompts} prompts "
        f"({comp.samples} sample(s) each).",
        f"- Win rate: {comp.win_rate:.0%} ({comp.wins} wins, {comp.losses} losses, {comp.ties} ties).",
        f"- Mean delta: {_signed(comp.mean_delta)} points, {comp.confidence:.0%} CI "
        f"[{_signed(comp.ci_low)}, {_signed(comp.ci_high)}] ({comp.resamples} bootstrap resamples).",
    ]


def _category_delta_rows(comp: Comparison) -> list[list[object]]:
    rows: list[list[object]] = []
    for name in CATEGORIES:
        cat: CategoryDelta = getattr(comp.categories, name)
        rows.append(
            [CATEGORY_TITLES[name], _signed(cat.mean_delta), f"[{_signed(cat.ci_low)}, {_signed(cat.ci_high)}]"]
        )
    return rows


def _rate_rows(comp: Comparison) -> list[list[object]]:
    return [
        [RATE_TITLES[r], _pct(getattr(comp.rates, r).candidate), _pct(getattr(comp.rates, r).baseline)]
        for r in RATE_NAMES
    ]


def render_markdown(results: EvaluationResults | dict[str, Any]) -> str:
    """A Markdown summary of a run: settings, the model table (mean score, tier, the four category scores,
    fact-check rates, tokens/s), mean score per task family, the comparison (win rate, mean delta with its
    interval, per-category deltas, rates) and the judge's summary when present. A dict is validated first."""
    res = _as_results(results)
    out = [f"# Evaluation results: {res.run}", ""]
    out += ["## Settings", "", markdown_table(["Setting", "Value"], _settings_rows(res))]
    headers, rows = _model_rows(res)
    out += ["## Models", "", markdown_table(headers, rows)]
    out.append(
        "Scores are 0-100; rates are per-answer means: hallucination = unsupported / all figures, derived error = "
        "wrong / stated engine outputs, coverage = key facts stated, repetition = repeated lines or word 5-grams. "
        "Misbound figures are stated in a unit their quantity never has; unattributed ones are bound to no "
        "quantity and checked by value alone.\n"
    )
    t_headers, t_rows = _task_rows(res)
    if t_rows:
        out += ["## Mean score per task family (answers)", "", markdown_table(t_headers, t_rows)]
    if res.comparison is not None:
        comp = res.comparison
        out += ["## Comparison", "", *_comparison_lines(comp), ""]
        out.append(markdown_table(["Category", "Mean delta", f"{comp.confidence:.0%} CI"], _category_delta_rows(comp)))
        out.append(markdown_table(["Rate", comp.candidate, comp.baseline], _rate_rows(comp)))
    if res.judge is not None:
        judge = res.judge
        out += [
            "## Judge",
            "",
            f"Judge **{judge.model}** ({judge.runtime or 'unknown runtime'}), {len(judge.scores)} scores, "
            f"{judge.parse_failures} unparsed replies.",
            "",
            markdown_table(["Model", "Mean judge score"], [[m, _score(v)] for m, v in judge.summary.items()]),
        ]
    return "\n".join(out).rstrip() + "\n"


def _failed_checks(rubric: dict[str, Any]) -> list[str]:
    """Lines describing the rubric checks that did not pass and the failed consistency checks."""
    lines = []
    categories = rubric.get("categories", {})
    for cat in categories.values() if isinstance(categories, dict) else []:
        for check in cat.get("checks", []) if isinstance(cat, dict) else []:
            if isinstance(check, dict) and not check.get("passed", True):
                reason = f": {check['reason']}" if check.get("reason") else ""
                lines.append(f"{check.get('category', '?')} / {check.get('name', '?')}{reason}")
    fact_check = rubric.get("fact_check", {})
    for check in fact_check.get("consistency", []) if isinstance(fact_check, dict) else []:
        if isinstance(check, dict) and check.get("status") == "fail":
            detail = f": {check['detail']}" if check.get("detail") else ""
            lines.append(f"consistency / {check.get('name', '?')}{detail}")
    for cap in rubric.get("caps", []) or []:
        if isinstance(cap, dict):
            lines.append(f"cap {cap.get('name', '?')} (score at most {cap.get('limit', '?')}): {cap.get('reason', '')}")
    return lines


def _figure(svg: str) -> str:
    return f'<figure class="chart">{svg}</figure>'


def _prompt_block(prompt: Prompt, outputs: list[Output]) -> str:
    parts = [f"<h4>Prompt</h4>{pre(prompt.prompt)}"]
    if prompt.system:
        parts.append(f"<details><summary>System message</summary>{pre(prompt.system)}</details>")
    for out in outputs:
        failed = _failed_checks(out.rubric)
        checks = (
            "<ul>" + "".join(f'<li class="fail">{esc(line)}</li>' for line in failed) + "</ul>"
            if failed
            else '<p class="pass">Every check passed.</p>'
        )
        meta = [f"score {out.score:.1f} ({out.tier})"]
        if out.completion_tokens is not None:
            meta.append(f"{out.completion_tokens} tokens")
        if out.finish_reason:
            meta.append(f"finish: {out.finish_reason}")
        parts.append(
            f"<details><summary>{esc(out.model)} &middot; sample {out.sample} &middot; {esc(', '.join(meta))}"
            f"</summary>{pre(out.text)}<h4>Failed checks ({len(failed)})</h4>{checks}</details>"
        )
    if not outputs:
        parts.append('<p class="muted">No answers.</p>')
    title = f"{prompt.id} · {prompt.ticker} · {prompt.task} · {prompt.condition}"
    return f"<details><summary>{esc(title)}</summary>{''.join(parts)}</details>"


def render_html(results: EvaluationResults | dict[str, Any]) -> str:
    """An offline HTML report of a run: settings and model tables, charts of the category scores, the score
    distributions and the fact-check rates per model, the per-family table, the comparison's deltas with their
    intervals when present, the judge's summary, and every prompt with each model's answer (collapsible,
    escaped) and its failed checks. A dict is validated first."""
    res = _as_results(results)
    names = [m.name for m in res.models]
    body: list[str] = []
    body.append(section("Settings", table(["Setting", "Value"], _settings_rows(res))))
    headers, rows = _model_rows(res)
    numeric = set(range(3, len(headers)))
    numeric.discard(6)  # the tier column is text
    models_html = table(headers, rows, numeric=numeric)
    models_html += _figure(
        charts.bar_chart(
            [CATEGORY_TITLES[c] for c in CATEGORIES],
            {m.name: [getattr(m.summary.categories, c) for c in CATEGORIES] for m in res.models},
            title="Mean score per rubric category",
            y_label="score (0-100)",
            y_max=100,
        )
    )
    scores_by_model: dict[str, list[float]] = {name: [] for name in names}
    for out in res.outputs:
        scores_by_model.setdefault(out.model, []).append(out.score)
    models_html += _figure(
        charts.histogram(
            scores_by_model,
            bins=[float(b) for b in range(0, 101, 10)],
            title="Distribution of answer scores",
            x_label="score",
        )
    )
    models_html += _figure(
        charts.bar_chart(
            [RATE_TITLES[r] for r in RATE_NAMES],
            {m.name: [_rate_of(getattr(m.summary, r)) for r in RATE_NAMES] for m in res.models},
            title="Fact-check rates per model",
            y_label="percent",
            y_max=100,
            value_format="{:.1f}%",
        )
    )
    body.append(section("Models", models_html))
    t_headers, t_rows = _task_rows(res)
    if t_rows:
        present = [str(r[0]) for r in t_rows]
        task_chart = charts.bar_chart(
            present,
            {m.name: [m.tasks[t].mean_score if t in m.tasks else None for t in present] for m in res.models},
            title="Mean score per task family",
            y_label="score (0-100)",
            y_max=100,
        )
        body.append(
            section(
                "Task families",
                table(t_headers, t_rows, numeric=set(range(1, len(t_headers))), caption="Mean score (answers)")
                + _figure(task_chart),
            )
        )
    if res.comparison is not None:
        comp = res.comparison
        labels = ["Total score", *(CATEGORY_TITLES[c] for c in CATEGORIES)]
        cats = [getattr(comp.categories, c) for c in CATEGORIES]
        chart = charts.error_bar_chart(
            labels,
            [comp.mean_delta, *(c.mean_delta for c in cats)],
            [comp.ci_low, *(c.ci_low for c in cats)],
            [comp.ci_high, *(c.ci_high for c in cats)],
            title=f"{comp.candidate} minus {comp.baseline}: mean delta and {comp.confidence:.0%} CI",
            x_label="score points",
        )
        comp_html = (
            "<ul>"
            + "".join(f"<li>{esc(line.removeprefix('- ').replace('**', ''))}</li>" for line in _comparison_lines(comp))
            + "</ul>"
        )
        comp_html += _figure(chart)
        comp_html += table(
            ["Category", "Mean delta", f"{comp.confidence:.0%} CI"], _category_delta_rows(comp), numeric={1, 2}
        )
        comp_html += table(["Rate", comp.candidate, comp.baseline], _rate_rows(comp), numeric={1, 2})
        delta_rows: list[list[object]] = [
            [d.prompt_id, f"{d.candidate:.1f}", f"{d.baseline:.1f}", _signed(d.delta)] for d in comp.deltas
        ]
        comp_html += (
            "<details><summary>Per-prompt deltas</summary>"
            + table(["Prompt", comp.candidate, comp.baseline, "Delta"], delta_rows, numeric={1, 2, 3})
            + "</details>"
        )
        body.append(section("Comparison", comp_html))
    if res.judge is not None:
        judge = res.judge
        judge_html = (
            f"<p>Judge <strong>{esc(judge.model)}</strong> ({esc(judge.runtime or 'unknown runtime')}), "
            f"{len(judge.scores)} scores, {judge.parse_failures} unparsed replies.</p>"
            + table(["Model", "Mean judge score"], [[m, _score(v)] for m, v in judge.summary.items()], numeric={1})
        )
        body.append(section("Judge", judge_html))
    by_prompt: dict[str, list[Output]] = defaultdict(list)
    for out in res.outputs:
        by_prompt[out.prompt_id].append(out)
    prompts_html = "".join(_prompt_block(p, by_prompt.get(p.id, [])) for p in res.prompts)
    body.append(section(f"Prompts and answers ({len(res.prompts)})", Raw(prompts_html)))
    subtitle = f"{res.mode} run, created {res.created}; models: {', '.join(names)}"
    return page(f"Evaluation results: {res.run}", "\n".join(body), subtitle=subtitle)


# ------------------------------------------------------------------------------------------------ writing


def write_results(out_dir: Path, results: dict[str, Any] | EvaluationResults) -> dict[str, Path]:
    """Validate ``results``, then write ``results.json`` (indent 2), ``summary.md`` and ``report.html`` into
    ``out_dir`` atomically; returns their paths by name (``results``, ``markdown``, ``html``). Nothing is written
    when validation fails."""
    out_dir = Path(out_dir)
    target = out_dir / "results.json"
    if isinstance(results, EvaluationResults):
        parsed, document = results, results.model_dump(mode="json")
    else:
        parsed, document = validate_results(results, source=str(target)), results
    paths = {
        "results": atomic_write_text(target, json.dumps(document, indent=2, ensure_ascii=False) + "\n"),
        "markdown": atomic_write_text(out_dir / "summary.md", render_markdown(parsed)),
        "html": atomic_write_text(out_dir / "report.html", render_html(parsed)),
    }
    return paths
