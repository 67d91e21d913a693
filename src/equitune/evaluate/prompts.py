"""Evaluation prompts: the default held-out set, and custom prompt files.

The default prompts are built for the **test-split companies** (the same seeded company split the training-data
generator uses, so no evaluated company was seen in training), for each configured task family and market
condition, exactly the way training prompts are built: the family's instruction, then the DATA block of the
company's reported figures and the finance engine's outputs, under the training system prompt. The engine
computes, the model writes: a model is judged on what it does with the facts it is given.

A custom prompt file (``--prompts F``) is JSONL or text:

* JSONL, one object per line, either ``{"ticker": "AAPL", "task": "valuation", "prompt": "...",
  "condition": "base", "id": "...", "system": "..."}`` (``condition``, ``id`` and ``system`` optional) or a line
  of a training-data file in the ``messages`` format (its system and user turns are used, its assistant turn is
  ignored);
* text, one prompt per line (blank lines and lines starting with ``#`` are skipped):
  ``TICKER TASK [CONDITION]`` builds the standard prompt for that company and task, and
  ``TICKER TASK [CONDITION]: free request`` sends the free request followed by that task's DATA block.

Every problem of every line is reported with its line number and field before anything runs.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equitune.data.families import FAMILY_IDS, get_family
from equitune.data.schema import SYSTEM_PROMPT
from equitune.errors import DataError
from equitune.evaluate.scoring import ContextSource, LineProblem, unknown_condition, unknown_ticker
from equitune.finance.conditions import CONDITIONS

if TYPE_CHECKING:
    from equitune.config import EquituneConfig
    from equitune.data.context import ExampleContext


@dataclass(frozen=True)
class EvalPrompt:
    """One evaluation prompt: what is asked about which company, under which market condition."""

    id: str
    ticker: str
    task: str
    condition: str
    prompt: str
    system: str | None = SYSTEM_PROMPT
    reference: str | None = None  # the engine-written answer of a default prompt (not sent to any model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ticker": self.ticker,
            "task": self.task,
            "condition": self.condition,
            "prompt": self.prompt,
            "system": self.system,
        }


class PromptFileError(DataError):
    """A prompt file with bad lines; ``problems`` lists every one."""

    def __init__(self, path: str, problems: list[LineProblem]) -> None:
        self.path = path
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:200])
        more = f"\n  ... and {len(problems) - 200} more" if len(problems) > 200 else ""
        super().__init__(f"{path}: {len(problems)} problem(s); no prompt was run:\n{shown}{more}")


def held_out_tickers(config: EquituneConfig, tickers: list[str]) -> list[str]:
    """The companies of the training data's test split: as recorded in ``paths.training_data/stats.json`` when
    the data has been generated (so a dataset made with another seed or other fractions is honoured), else as
    the generator would split them with this configuration (same seed, same fractions)."""
    recorded = _recorded_test_split(Path(config.paths.training_data) / "stats.json")
    if recorded is not None:
        known = set(tickers)
        return sorted(t for t in recorded if t in known)
    from equitune.data.generator import split_companies

    split = split_companies(tickers, config.data.seed, config.data.train_fraction, config.data.valid_fraction)
    return sorted(t for t, part in split.items() if part == "test")


def _recorded_test_split(stats: Path) -> list[str] | None:
    if not stats.is_file():
        return None
    try:
        recorded = json.loads(stats.read_text(encoding="utf-8"))["companies"]["test"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{stats}: cannot read the test split's companies ({exc})") from exc
    if not isinstance(recorded, list) or not all(isinstance(t, str) for t in recorded):
        raise DataError(f"{stats}: companies.test must be a list of tickers")
    return recorded


def standard_prompt(ctx: ExampleContext, task: str, seed: int = 0) -> tuple[str, str]:
    """The training-style prompt for ``ctx`` and ``task`` (instruction + DATA block) and the engine's answer.

    The phrasing is drawn from a generator seeded by company, task and condition, so a prompt set is the same
    on every run."""
    family = get_family(task)
    rng = random.Random(f"{seed}:{ctx.ticker}:{task}:{ctx.condition.name}")
    return family.render(ctx, rng)


def default_prompts(
    config: EquituneConfig, *, contexts: ContextSource | None = None, max_prompts: int | None = None
) -> list[EvalPrompt]:
    """Held-out prompts: test-split companies x ``evaluation.families`` x ``evaluation.conditions``.

    With ``max_prompts`` (default ``evaluation.max_prompts``) the set is cut after interleaving families
    (company 1 in every family, then company 2, ...), so a short run still covers every family. With
    ``evaluation.closed_book`` each prompt is the bare request without its DATA block: the answers show what a
    model states about a company from memory, and the fact-check scores those figures against the same data."""
    source = contexts or ContextSource.from_config(config)
    tickers = held_out_tickers(config, source.tickers())
    if not tickers:
        raise DataError(
            "the test split holds no company of the market data (fewer than three companies, or the "
            f"training data in {config.paths.training_data} names none the market data has)"
        )
    limit = max_prompts if max_prompts is not None else config.evaluation.max_prompts
    prompts: list[EvalPrompt] = []
    for ticker in tickers:
        for condition in config.evaluation.conditions:
            ctx = source.get(ticker, condition)
            for task in config.evaluation.families:
                prompt, reference = standard_prompt(ctx, task, config.evaluation.seed)
                if config.evaluation.closed_book:
                    prompt = prompt.split("\n\nDATA\n", 1)[0]
                prompts.append(
                    EvalPrompt(
                        id=f"{ticker}-{task}-{condition}" + ("-closed" if config.evaluation.closed_book else ""),
                        ticker=ticker,
                        task=task,
                        condition=condition,
                        prompt=prompt,
                        reference=reference,
                    )
                )
    return prompts[:limit] if limit is not None else prompts


_TEXT_LINE = re.compile(
    r"^(?P<ticker>[A-Za-z][A-Za-z0-9.\-]*)\s+(?P<task>\w+)(?:\s+(?P<cond>\w+))?\s*(?::\s*(?P<req>.*))?$"
)


def load_prompts(
    path: str | Path, config: EquituneConfig, *, contexts: ContextSource | None = None
) -> list[EvalPrompt]:
    """Prompts from a JSONL or text file (see the module docstring); ``PromptFileError`` lists every bad line."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such prompt file")
    source = contexts or ContextSource.from_config(config)
    text = file.read_text(encoding="utf-8")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        raise DataError(f"{file}: empty prompt file")
    problems: list[LineProblem] = []
    found: list[tuple[EvalPrompt, int, bool]] = []
    jsonl = file.suffix.lower() in (".jsonl", ".json") or first.startswith("{")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            if jsonl:
                problems.append(LineProblem(number, "(line)", "blank line"))
            continue
        if not jsonl and line.startswith("#"):
            continue
        read = (_json_prompt if jsonl else _text_prompt)(line, number, source, config, problems)
        if read is not None:
            found.append((read[0], number, read[1]))
    explicit: dict[str, int] = {}
    for prompt, number, given in found:
        if given and prompt.id in explicit:
            problems.append(
                LineProblem(number, "id", f"duplicate id '{prompt.id}' (first on line {explicit[prompt.id]})")
            )
        elif given:
            explicit[prompt.id] = number
    if problems:
        raise PromptFileError(str(file), sorted(problems, key=lambda p: p.line))
    return _unique_ids([(p, given) for p, _, given in found])


def _known(
    ticker: Any, task: Any, condition: Any, number: int, source: ContextSource, problems: list[LineProblem]
) -> tuple[str, str, str] | None:
    before = len(problems)
    resolved = source.resolve(ticker) if isinstance(ticker, str) and ticker.strip() else None
    if not isinstance(ticker, str) or not ticker.strip():
        problems.append(LineProblem(number, "ticker", "missing"))
    elif resolved is None:
        problems.append(unknown_ticker(ticker, number, source))
    if task not in FAMILY_IDS:
        problems.append(LineProblem(number, "task", f"unknown task {task!r} (expected one of {', '.join(FAMILY_IDS)})"))
    if condition not in CONDITIONS:
        problems.append(unknown_condition(condition, number))
    if len(problems) > before or resolved is None:
        return None
    return resolved, str(task), str(condition)


def _json_prompt(
    line: str, number: int, source: ContextSource, config: EquituneConfig, problems: list[LineProblem]
) -> tuple[EvalPrompt, bool] | None:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        problems.append(LineProblem(number, "(json)", f"malformed JSON: {exc.msg} at column {exc.colno}"))
        return None
    if not isinstance(obj, dict):
        problems.append(LineProblem(number, "(record)", f"expected a JSON object, got {type(obj).__name__}"))
        return None
    system: str | None = SYSTEM_PROMPT
    if "messages" in obj:  # a training-data line
        turns = obj.get("messages")
        users = [m.get("content") for m in turns or [] if isinstance(m, dict) and m.get("role") == "user"]
        systems = [m.get("content") for m in turns or [] if isinstance(m, dict) and m.get("role") == "system"]
        if not users or not isinstance(users[0], str) or not users[0].strip():
            problems.append(LineProblem(number, "messages", "no user turn"))
            return None
        prompt_text: Any = users[0]
        system = systems[0] if systems and isinstance(systems[0], str) else SYSTEM_PROMPT
        task = obj.get("family")
        field_names = {"messages", "family", "ticker", "condition", "rating", "source", "id"}
    else:
        prompt_text = obj.get("prompt")
        task = obj.get("task")
        if "system" in obj:
            system = obj["system"] if isinstance(obj["system"], str) and obj["system"].strip() else None
        field_names = {"ticker", "task", "prompt", "condition", "id", "system"}
        if not isinstance(prompt_text, str) or not prompt_text.strip():
            problems.append(LineProblem(number, "prompt", "missing or empty"))
    for key in obj:
        if key not in field_names:
            problems.append(
                LineProblem(number, str(key), f"unknown field (accepted: {', '.join(sorted(field_names))})")
            )
    known = _known(obj.get("ticker"), task, obj.get("condition") or "base", number, source, problems)
    if known is None or not isinstance(prompt_text, str) or not prompt_text.strip():
        return None
    ticker, task_id, condition = known
    given = obj.get("id")
    if given is not None and (isinstance(given, bool) or not isinstance(given, (str, int))):
        problems.append(LineProblem(number, "id", f"must be a string or an integer, got {type(given).__name__}"))
        return None
    ident = str(given) if given is not None else f"{ticker}-{task_id}-{condition}"
    return EvalPrompt(ident, ticker, task_id, condition, prompt_text, system), given is not None


def _text_prompt(
    line: str, number: int, source: ContextSource, config: EquituneConfig, problems: list[LineProblem]
) -> tuple[EvalPrompt, bool] | None:
    match = _TEXT_LINE.match(line)
    if match is None:
        problems.append(LineProblem(number, "(line)", "expected 'TICKER TASK [CONDITION]' or 'TICKER TASK: request'"))
        return None
    known = _known(match["ticker"], match["task"], match["cond"] or "base", number, source, problems)
    if known is None:
        return None
    ticker, task, condition = known
    ctx = source.get(ticker, condition)
    prompt, answer = standard_prompt(ctx, task, config.evaluation.seed)
    reference: str | None = answer
    request = (match["req"] or "").strip()
    if request:
        from equitune.data.blocks import data_block

        prompt = f"{request}\n\n{data_block(ctx, list(get_family(task).sections))}"
        reference = None
    return EvalPrompt(f"{ticker}-{task}-{condition}", ticker, task, condition, prompt, SYSTEM_PROMPT, reference), False


def _unique_ids(prompts: list[tuple[EvalPrompt, bool]]) -> list[EvalPrompt]:
    """Generated ids made unique (``-2``, ``-3`` on repeats of the same company, task and condition); ids given
    in the file (flagged True) are kept as they are and never taken by a generated one."""
    given = {p.id for p, explicit in prompts if explicit}
    out: list[EvalPrompt] = []
    used: set[str] = set()
    for p, explicit in prompts:
        if explicit:
            used.add(p.id)
            out.append(p)
            continue
        ident, n = p.id, 2
        while ident in used or ident in given:
            ident, n = f"{p.id}-{n}", n + 1
        used.add(ident)
        out.append(EvalPrompt(ident, p.ticker, p.task, p.condition, p.prompt, p.system, p.reference))
    return out
