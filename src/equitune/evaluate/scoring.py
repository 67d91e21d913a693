"""Scoring a file of model outputs (``equitune evaluate --score FILE.jsonl``) with the rubric and the fact-check.

The file holds one JSON object per line::

    {"ticker": "AAPL", "task": "valuation", "prompt": "<the request and DATA block>", "output": "<the model's text>",
     "model": "equity-research:q4", "id": "aapl-val-1", "condition": "base"}

``ticker``, ``task`` (one of the six family identifiers), ``prompt`` and ``output`` are required; ``model``,
``id``, ``condition`` (a market-condition name, default ``base``), ``meta`` (any JSON, carried through) and
``timestamp`` (a string, e.g. the ISO-8601 time a production log line was written; carried through to the scored
output, not scored and not checked further) are optional, so a production log written by
``equitune.evaluate.monitor.log_production_output`` can be rescored as it is. Any other key is an error naming
it, so a misspelt ``condtion`` cannot silently fall back to the base case.

Each output is scored against the company's data under its condition, built by the same context builder the
training-data generator uses (``equitune.data.context.build_context`` over the embedded market data, with the
configured valuation assumptions), memoised per ticker and condition. No model is loaded.

Bad lines are never dropped: every problem (blank line, malformed JSON, missing or mistyped field, unknown key,
task, ticker or condition, duplicate id) is collected with its line number and field, and the file is rejected
as a whole with one ``OutputsFileError`` listing them all, before anything is scored. A score over the lines
that happened to be valid would compare models on different sets of prompts without saying so.
"""

from __future__ import annotations

import gc
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equitune.data.families import FAMILY_IDS
from equitune.errors import DataError
from equitune.evaluate.rubric import DEFAULT_WEIGHTS, RubricScore, RubricWeights, score_report
from equitune.evaluate.weights import CATEGORIES, TIERS, tier_for
from equitune.finance.conditions import CONDITIONS

if TYPE_CHECKING:
    from equitune.config import EquituneConfig
    from equitune.data.context import ExampleContext
    from equitune.finance import CompanyAnalysis, ValuationAssumptions
    from equitune.market.models import Company

REQUIRED_FIELDS = ("ticker", "task", "prompt", "output")
OPTIONAL_FIELDS = ("model", "id", "condition", "meta", "timestamp")


@dataclass(frozen=True)
class LineProblem:
    """One problem with a line of the outputs file: where (line, field) and what."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


class OutputsFileError(DataError):
    """An outputs file with bad lines; ``problems`` lists every one (the message does too)."""

    def __init__(self, path: str, problems: list[LineProblem], limit: int = 200) -> None:
        self.path = path
        self.problems = problems
        shown = [f"  {p}" for p in problems[:limit]]
        if len(problems) > limit:
            shown.append(f"  ... and {len(problems) - limit} more")
        lines = len({p.line for p in problems})
        super().__init__(
            f"{path}: {len(problems)} problem(s) on {lines} line(s); nothing was scored:\n" + "\n".join(shown)
        )


@dataclass(frozen=True)
class OutputRecord:
    """One valid line of an outputs file."""

    line: int
    ticker: str
    task: str
    prompt: str
    output: str
    condition: str = "base"
    model: str | None = None
    id: str | None = None
    meta: Any = None
    timestamp: str | None = None


@dataclass
class ScoredOutput:
    """One output with its rubric score (which holds the fact-check)."""

    line: int
    ticker: str
    task: str
    condition: str
    model: str | None
    id: str | None
    score: RubricScore
    meta: Any = None
    timestamp: str | None = None

    def to_dict(self, figures: bool = False) -> dict[str, Any]:
        """JSON-ready; ``figures=True`` adds the label of every figure."""
        return {
            "line": self.line,
            "id": self.id,
            "model": self.model,
            "ticker": self.ticker,
            "task": self.task,
            "condition": self.condition,
            **({"meta": self.meta} if self.meta is not None else {}),
            **({"timestamp": self.timestamp} if self.timestamp is not None else {}),
            **self.score.to_dict(figures=figures),
        }


class ContextSource:
    """``ExampleContext`` by (ticker, condition), built on first use with the generator's context builder.

    The base-case analysis of a company is computed once and shared by its condition variants, exactly as
    ``equitune.data.context.build_contexts`` does for the training data."""

    def __init__(self, universe: list[Company] | None = None, assumptions: ValuationAssumptions | None = None):
        if universe is None:
            from equitune.market.base import get_provider
            from equitune.market.service import load_universe

            universe = load_universe(get_provider("embedded"))
        self.universe = universe
        self.assumptions = assumptions
        self._companies = {c.ticker: c for c in universe}
        self._contexts: dict[tuple[str, str], ExampleContext] = {}
        self._base: dict[str, CompanyAnalysis] = {}

    @classmethod
    def from_config(cls, config: EquituneConfig | None = None, universe: list[Company] | None = None) -> ContextSource:
        """Contexts valued with ``config.valuation`` (default configuration when None)."""
        if config is None:
            from equitune.config import EquituneConfig

            config = EquituneConfig()
        return cls(universe, config.valuation)

    def __len__(self) -> int:
        return len(self._contexts)

    def tickers(self) -> list[str]:
        return sorted(self._companies)

    def resolve(self, ticker: str) -> str | None:
        """The known ticker ``ticker`` names (BRK-B and brk.b both name BRK.B), or None."""
        from equitune.market.base import normalise_ticker

        key = normalise_ticker(ticker)
        return key if key in self._companies else None

    def get(self, ticker: str, condition: str = "base") -> ExampleContext:
        """The context of a known ticker under a named condition (KeyError / ValueError otherwise)."""
        key = (ticker, condition)
        context = self._contexts.get(key)
        if context is None:
            from equitune.data.context import build_context

            if condition not in CONDITIONS:
                raise ValueError(f"unknown condition '{condition}'; valid: {', '.join(CONDITIONS)}")
            company = self._companies[ticker]
            context = build_context(
                company, self.universe, CONDITIONS[condition], self.assumptions, base=self._base.get(ticker)
            )
            self._base.setdefault(ticker, context.base)
            self._contexts[key] = context
        return context


def _string(obj: dict[str, Any], name: str, line: int, problems: list[LineProblem], empty_ok: bool = False) -> str:
    value = obj.get(name)
    if name not in obj or value is None:
        problems.append(LineProblem(line, name, "missing"))
        return ""
    if not isinstance(value, str):
        problems.append(LineProblem(line, name, f"must be a string, got {type(value).__name__}"))
        return ""
    if not empty_ok and not value.strip():
        problems.append(LineProblem(line, name, "empty"))
    return value


def unknown_ticker(ticker: str, line: int, contexts: ContextSource) -> LineProblem:
    """The problem of a ticker the market data does not hold, naming the closest ones it does."""
    from equitune.market.base import closest_tickers

    close = closest_tickers(ticker, contexts.tickers(), n=3)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return LineProblem(line, "ticker", f"unknown ticker '{ticker}' (not in the market data{hint})")


def unknown_condition(condition: object, line: int) -> LineProblem:
    """The problem of a market condition that is not one of ``CONDITIONS``."""
    return LineProblem(line, "condition", f"unknown condition {condition!r} (expected one of {', '.join(CONDITIONS)})")


def parse_output_line(obj: Any, line: int, contexts: ContextSource) -> tuple[OutputRecord | None, list[LineProblem]]:
    """Check one parsed line; the record, or every problem found in it."""
    if not isinstance(obj, dict):
        return None, [LineProblem(line, "(record)", f"expected a JSON object, got {type(obj).__name__}")]
    problems: list[LineProblem] = []
    for key in obj:
        if key not in REQUIRED_FIELDS and key not in OPTIONAL_FIELDS:
            accepted = ", ".join((*REQUIRED_FIELDS, *OPTIONAL_FIELDS))
            problems.append(LineProblem(line, str(key), f"unknown field (accepted: {accepted})"))
    ticker = _string(obj, "ticker", line, problems)
    task = _string(obj, "task", line, problems)
    prompt = _string(obj, "prompt", line, problems)
    output = _string(obj, "output", line, problems, empty_ok=True)  # an empty answer is scored (0), not rejected
    if task and task not in FAMILY_IDS:
        problems.append(LineProblem(line, "task", f"unknown task '{task}' (expected one of {', '.join(FAMILY_IDS)})"))
    known = contexts.resolve(ticker) if ticker.strip() else None
    if ticker.strip() and known is None:
        problems.append(unknown_ticker(ticker, line, contexts))
    condition = obj.get("condition", "base")
    if condition is None:
        condition = "base"
    if not isinstance(condition, str) or condition not in CONDITIONS:
        problems.append(unknown_condition(condition, line))
    optional: dict[str, str | None] = {}
    for name, types in (("model", (str,)), ("id", (str, int)), ("timestamp", (str,))):
        value = obj.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            wanted = "a string or an integer" if name == "id" else "a string"
            problems.append(LineProblem(line, name, f"must be {wanted}, got {type(value).__name__}"))
        optional[name] = None if value is None else str(value)
    if problems:
        return None, problems
    record = OutputRecord(
        line=line,
        ticker=str(known),
        task=task,
        prompt=prompt,
        output=output,
        condition=str(condition),
        model=optional["model"],
        id=optional["id"],
        meta=obj.get("meta"),
        timestamp=optional["timestamp"],
    )
    return record, []


def read_outputs(path: str | Path, contexts: ContextSource) -> list[OutputRecord]:
    """Every line of ``path`` as an ``OutputRecord``; raises ``OutputsFileError`` listing every problem of every
    line (and ``DataError`` for a missing or empty file)."""
    from equitune.data.validate import iter_jsonl

    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    records: list[OutputRecord] = []
    problems: list[LineProblem] = []
    ids: dict[str, int] = {}
    lines = 0
    for line, obj, error in iter_jsonl(file):
        lines += 1
        if error is not None:
            problems.append(LineProblem(line, "(json)", error))
            continue
        record, issues = parse_output_line(obj, line, contexts)
        problems.extend(issues)
        if record is None:
            continue
        if record.id is not None:
            if record.id in ids:
                problems.append(LineProblem(line, "id", f"duplicate id '{record.id}' (first on line {ids[record.id]})"))
                continue
            ids[record.id] = line
        records.append(record)
    if problems:
        raise OutputsFileError(str(file), problems)
    if not lines:
        raise DataError(f"{file}: empty file (expected one JSON object per line)")
    return records


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a batch (restored afterwards, even on error).

    Valuing companies builds many long-lived objects, and the collector's full passes over them cost about a
    quarter of a scoring run; reference counting still frees everything outside reference cycles meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def score_records(
    records: Iterable[OutputRecord], contexts: ContextSource, weights: RubricWeights = DEFAULT_WEIGHTS
) -> list[ScoredOutput]:
    """Score each record against its company's context (see the module docstring)."""
    scored = []
    with paused_gc():
        for r in records:
            context = contexts.get(r.ticker, r.condition)
            result = score_report(r.output, r.task, context, weights, prompt=r.prompt)
            scored.append(
                ScoredOutput(r.line, r.ticker, r.task, r.condition, r.model, r.id, result, r.meta, r.timestamp)
            )
    return scored


def score_outputs_file(
    path: str | Path,
    *,
    config: EquituneConfig | None = None,
    universe: list[Company] | None = None,
    contexts: ContextSource | None = None,
    weights: RubricWeights | None = None,
) -> list[ScoredOutput]:
    """Read, check and score every line of ``path`` (``equitune evaluate --score FILE.jsonl``).

    Contexts come from ``contexts``, else are built from ``universe`` (default: the embedded market data) with
    ``config.valuation``; ``weights`` default to the rubric's. Raises ``OutputsFileError`` (a ``DataError``)
    listing every bad line, with nothing scored, when any line is bad."""
    source = contexts if contexts is not None else ContextSource.from_config(config, universe)
    records = read_outputs(path, source)
    return score_records(records, source, weights or DEFAULT_WEIGHTS)


def mean_rate(scores: list[RubricScore], rate: str) -> float | None:
    """The mean of a fact-check rate over the scores that have it (4 decimals; None when none has it)."""
    values = [getattr(s.fact_check, rate) for s in scores]
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def summarise_scores(scores: list[RubricScore]) -> dict[str, Any]:
    """The ``summary`` block of a model (or of one task of a model): means, tiers and fact-check rates."""
    if not scores:
        return {
            "outputs": 0,
            "mean_score": None,
            "std_score": None,
            "tier": None,
            "categories": {name: None for name in CATEGORIES},
            "tiers": {t.name: 0 for t in TIERS},
            "hallucination_rate": None,
            "derived_error_rate": None,
            "key_fact_coverage": None,
            "figures": 0,
            "unsupported": 0,
            "derived_wrong": 0,
            "failed_consistency": 0,
            "misbound": 0,
            "unattributed": 0,
            "repetition": None,
            "repetitive": 0,
        }
    totals = [s.score for s in scores]
    mean_score = statistics.fmean(totals)
    repetition = [s.readability.repetition for s in scores if s.readability is not None]
    return {
        "outputs": len(scores),
        "mean_score": round(mean_score, 2),
        "std_score": round(statistics.stdev(totals), 2) if len(totals) > 1 else 0.0,
        "tier": tier_for(mean_score).name,
        "categories": {name: round(statistics.fmean(s.category(name).score for s in scores), 2) for name in CATEGORIES},
        "tiers": {t.name: sum(s.tier == t.name for s in scores) for t in TIERS},
        "hallucination_rate": mean_rate(scores, "hallucination_rate"),
        "derived_error_rate": mean_rate(scores, "derived_error_rate"),
        "key_fact_coverage": mean_rate(scores, "key_fact_coverage"),
        "figures": sum(len(s.fact_check.figures) for s in scores),
        "unsupported": sum(s.fact_check.count("unsupported") for s in scores),
        "derived_wrong": sum(s.fact_check.count("derived_wrong") for s in scores),
        "failed_consistency": sum(len(s.fact_check.failed_consistency()) for s in scores),
        "misbound": sum(s.fact_check.misbound for s in scores),
        "unattributed": sum(s.fact_check.unattributed for s in scores),
        "repetition": round(statistics.fmean(repetition), 4) if repetition else None,
        "repetitive": sum(any(c.name == "repetitive" for c in s.caps) for s in scores),
    }


def summarise(scored: list[ScoredOutput]) -> dict[str, Any]:
    """Totals over scored outputs, overall, per model and per (model, task): the ``summarise_scores`` block of
    each (count, mean score and its tier, category means, tiers, fact-check rates and counts), the same block an
    evaluation writes for a model, so the same answers get the same figures either way."""

    def stats(items: list[ScoredOutput]) -> dict[str, Any]:
        return summarise_scores([s.score for s in items])

    by_model: dict[str, list[ScoredOutput]] = defaultdict(list)
    by_task: dict[tuple[str, str], list[ScoredOutput]] = defaultdict(list)
    for s in scored:
        by_model[s.model or "(unnamed)"].append(s)
        by_task[(s.model or "(unnamed)", s.task)].append(s)
    return {
        "overall": stats(scored),
        "models": {
            model: {
                **stats(items),
                "tasks": {task: stats(by_task[(model, task)]) for task in FAMILY_IDS if by_task.get((model, task))},
            }
            for model, items in sorted(by_model.items())
        },
    }
