"""Validation of training examples: structure, length, duplicates and, above all, every figure.

A figure in a response is *supported* when it matches a fact of the company's fact sheet (reported figures and
the finance engine's outputs, under the example's market condition) within the rounding it was written to, or
a figure the prompt itself gave. Everything else is *unsupported* and an error. ``validate_file`` reads a JSONL
file line by line and reports every problem with its line number; it never drops a line silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equitune.data.coherence import coherence_issues
from equitune.data.facts import FactSheet
from equitune.data.families import FAMILY_IDS
from equitune.data.numbers import Figure, extract_figures
from equitune.data.schema import ROLES
from equitune.errors import DataError

_TOKEN = re.compile(r"\w+|[^\w\s]")
KNOWN_FAMILIES = (*FAMILY_IDS, "custom")


def approx_tokens(text: str) -> int:
    """Token count estimate: words and punctuation marks (close to, and usually above, a BPE count)."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class Issue:
    """One problem: where (line, field) and what."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass
class ValidationReport:
    """The outcome of validating a file: line counts and every issue found."""

    path: str
    lines: int = 0
    valid: int = 0
    issues: list[Issue] = field(default_factory=list)
    unsupported: dict[int, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.issues

    def format(self, limit: int = 50) -> str:
        """A human summary: counts, then the first ``limit`` issues."""
        head = f"{self.path}: {self.lines} lines, {self.valid} valid, {self.lines - self.valid} with errors"
        body = [f"  {issue}" for issue in self.issues[:limit]]
        if len(self.issues) > limit:
            body.append(f"  ... and {len(self.issues) - limit} more")
        return "\n".join([head, *body])


def figures_in(text: str) -> list[Figure]:
    """The figures of ``text`` that are checked (counts are not)."""
    return [f for f in extract_figures(text) if f.kind != "count"]


def _given(prompt_figures: list[Figure], figure: Figure) -> bool:
    return any(p.kind == figure.kind and figure.matches(p.value) for p in prompt_figures)


def unsupported_figures(response: str | list[Figure], facts: FactSheet | None, prompt: str = "") -> list[Figure]:
    """Figures of ``response`` (text, or its figures already extracted) that match neither a fact nor a
    figure the prompt gave."""
    figures = figures_in(response) if isinstance(response, str) else response
    missing = facts.unsupported(figures) if facts is not None else list(figures)
    if missing and prompt:
        given = figures_in(prompt)
        missing = [f for f in missing if not _given(given, f)]
    return missing


def data_block_of(prompt: str) -> str:
    """The DATA block of a prompt (from its 'DATA' line to the end), or '' when it has none."""
    match = re.search(r"(?m)^DATA$", prompt)
    return prompt[match.start() :] if match else ""


def example_issues(record: dict[str, str], sheet: FactSheet | None, line: int) -> list[Issue]:
    """The whole-example checks of one record of a generated family: every figure of the prompt's DATA
    block against the company's data and the engine, every figure of the response against that DATA block
    (the response quotes only the block's figures), and the coherence of the response's sentences."""
    issues: list[Issue] = []
    data = data_block_of(record["prompt"])
    if not data:
        return [Issue(line, "prompt", "no DATA block: a generated example quotes only the block's figures")]
    if sheet is not None:
        wrong = sheet.unsupported(figures_in(data))
        if wrong:
            shown = ", ".join(f.raw for f in wrong[:10]) + (f" (+{len(wrong) - 10} more)" if len(wrong) > 10 else "")
            issues.append(
                Issue(
                    line,
                    "prompt",
                    f"{len(wrong)} DATA block figure(s) disagree with {record.get('ticker')}'s "
                    f"data and the engine: {shown}",
                )
            )
    given = figures_in(data)
    response_figures = extract_figures(record["response"])
    outside = [f for f in response_figures if f.kind != "count" and not _given(given, f)]
    if outside:
        shown = ", ".join(f.raw for f in outside[:10]) + (f" (+{len(outside) - 10} more)" if len(outside) > 10 else "")
        issues.append(Issue(line, "response", f"{len(outside)} figure(s) not given in the DATA block: {shown}"))
    for problem in coherence_issues(record["response"], data, response_figures):
        issues.append(Issue(line, "response", f"incoherent: {problem}"))
    return issues


class FactSource:
    """Fact sheets by (ticker, condition), built on first use from a universe of companies."""

    def __init__(self, universe: list[Any] | None = None) -> None:
        self._universe = universe
        self._sheets: dict[tuple[str, str], FactSheet | None] = {}
        self._base: dict[str, Any] = {}

    def universe(self) -> list[Any]:
        if self._universe is None:
            from equitune.market.providers.embedded import load_snapshot

            self._universe = list(load_snapshot().values())
        return self._universe

    def sheet(self, ticker: str | None, condition: str = "base") -> FactSheet | None:
        """The fact sheet of ``ticker`` under ``condition``; None when the ticker is not in the universe."""
        if not ticker:
            return None
        key = (ticker.upper(), condition)
        if key not in self._sheets:
            from equitune.data.context import build_context
            from equitune.finance.conditions import CONDITIONS

            companies = {c.ticker: c for c in self.universe()}
            company = companies.get(key[0])
            if company is None or condition not in CONDITIONS:
                self._sheets[key] = None
            else:
                ctx = build_context(company, self.universe(), CONDITIONS[condition], base=self._base.get(key[0]))
                self._base[key[0]] = ctx.base
                self._sheets[key] = ctx.facts
        return self._sheets[key]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def parse_record(obj: Any, line: int) -> tuple[dict[str, str], list[Issue]]:
    """Read one record of either format into {system, prompt, response, family, ticker, condition}."""
    issues: list[Issue] = []
    if not isinstance(obj, dict):
        return {}, [Issue(line, "(record)", f"expected a JSON object, got {type(obj).__name__}")]
    out: dict[str, str] = {}
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            return {}, [Issue(line, "messages", "must be a non-empty list")]
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                issues.append(Issue(line, where, "must be an object with role and content"))
                continue
            role = message.get("role")
            if role not in ROLES:
                issues.append(
                    Issue(line, f"{where}.role", f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
                )
                continue
            content = _text(message.get("content"))
            if content is None:
                issues.append(Issue(line, f"{where}.content", "missing or empty"))
                continue
            key = {"system": "system", "user": "prompt", "assistant": "response"}[role]
            out[key] = f"{out[key]}\n\n{content}" if key in out else content
        if not issues:
            if messages[-1].get("role") != "assistant":
                issues.append(Issue(line, "messages", "the last message must be the assistant's response"))
            if "prompt" not in out:
                issues.append(Issue(line, "messages", "no user message"))
    elif "instruction" in obj or "output" in obj:
        for name in ("instruction", "output"):
            if _text(obj.get(name)) is None:
                issues.append(Issue(line, name, "missing or empty"))
        data = obj.get("input") or ""
        if not isinstance(data, str):
            issues.append(Issue(line, "input", "must be a string"))
            data = ""
        if not issues:
            out["prompt"] = f"{obj['instruction']}\n\n{data}" if data else obj["instruction"]
            out["response"] = obj["output"]
    else:
        issues.append(Issue(line, "(record)", "neither 'messages' nor 'instruction'/'output' present"))
    family = obj.get("family")
    if family is not None and family not in KNOWN_FAMILIES:
        issues.append(Issue(line, "family", f"unknown family {family!r} (expected one of {', '.join(KNOWN_FAMILIES)})"))
    for name in ("family", "ticker", "condition"):
        if isinstance(obj.get(name), str):
            out[name] = obj[name]
    return out, issues


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed object or None, error) for every line of ``path`` (blank lines are errors)."""
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                yield number, None, "blank line (JSONL holds one record per line)"
                continue
            try:
                yield number, json.loads(raw), None
            except json.JSONDecodeError as exc:
                yield number, None, f"malformed JSON: {exc.msg} (column {exc.colno})"


def validate_records(
    records: Iterable[tuple[int, Any, str | None]],
    path: str,
    max_tokens: int = 2048,
    facts: FactSource | None = None,
) -> ValidationReport:
    """Validate (line, object, parse error) triples; see ``validate_file``."""
    facts = facts or FactSource()
    report = ValidationReport(path)
    seen: dict[str, int] = {}
    for line, obj, error in records:
        report.lines += 1
        if error is not None:
            report.issues.append(Issue(line, "(json)", error))
            continue
        record, issues = parse_record(obj, line)
        if not issues:
            tokens = approx_tokens(record["response"])
            if tokens > max_tokens:
                issues.append(Issue(line, "response", f"about {tokens} tokens, over the limit of {max_tokens}"))
            key = record["prompt"].strip() + "\x00" + record["response"].strip()
            if key in seen:
                issues.append(Issue(line, "(record)", f"duplicate of line {seen[key]}"))
            else:
                seen[key] = line
            sheet = facts.sheet(record.get("ticker"), record.get("condition", "base"))
            missing = unsupported_figures(record["response"], sheet, record["prompt"])
            if missing:
                raws = [f.raw for f in missing]
                report.unsupported[line] = raws
                basis = f"{record.get('ticker')}'s facts" if sheet is not None else "the prompt (no known ticker)"
                shown = ", ".join(raws[:10]) + (f" (+{len(raws) - 10} more)" if len(raws) > 10 else "")
                issues.append(Issue(line, "response", f"{len(raws)} unsupported figure(s) vs {basis}: {shown}"))
            if record.get("family") in FAMILY_IDS:
                issues.extend(example_issues(record, sheet, line))
        report.issues.extend(issues)
        if not issues:
            report.valid += 1
    return report


def validate_file(path: str | Path, max_tokens: int = 2048, facts: FactSource | None = None) -> ValidationReport:
    """Check every line of a JSONL file: malformed JSON, missing or empty fields, unknown roles or families,
    responses over ``max_tokens`` (estimated), duplicates (naming the first line), unsupported figures and,
    for the generated families, each example as a whole (``example_issues``: the DATA block against the data,
    the response against the DATA block, the coherence of the response)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    return validate_records(iter_jsonl(file), str(file), max_tokens, facts)
