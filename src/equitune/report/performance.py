"""The workflow's performance report: ``report.html`` (self-contained, offline) and ``report.md``.

It brings together what each stage left behind: the training and validation loss curves
(``finetuned_models/<run>/metrics.jsonl`` and ``training_report.json``), the data statistics (``stats.json``),
and the benchmark of the fine-tuned model against its base (an evaluation ``results.json``, see the results
schema): mean scores with the bootstrap confidence interval of the mean delta, win rate, rubric sub-scores,
fact-check rates, the tier verdict and side-by-side answers of both models to the same held-out prompts.
The HTML inlines its SVG charts; the Markdown refers to the same charts saved beside it in ``report_files/``.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equitune.evaluate.results import RATE_NAMES, generation_rate
from equitune.evaluate.weights import CATEGORIES, TIERS, tier_for
from equitune.io import atomic_write_text
from equitune.report import charts
from equitune.report import html as h

HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"
CHARTS_DIR = "report_files"
SCORE_BINS = tuple(float(b) for b in range(0, 101, 10))
"""The score distribution's bin edges: ten 10-point bands from 0 to 100."""
RATES = RATE_NAMES
RATE_LABELS = {
    "hallucination_rate": "hallucination rate",
    "derived_error_rate": "derived-figure error rate",
    "key_fact_coverage": "key-fact coverage",
}


# ---------------------------------------------------------------------------------------- numbers


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _fmt(value: Any, pattern: str = "{:.1f}") -> str:
    number = _num(value)
    return pattern.format(number) if number is not None else "n/a"


def _pct(value: Any) -> str:
    number = _num(value)
    return f"{number:.1%}" if number is not None else "n/a"


def _signed(value: Any, pattern: str = "{:+.1f}") -> str:
    return _fmt(value, pattern)


def _wins_losses_ties(counts: Mapping[str, Any]) -> str:
    def plural(n: Any, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"

    wins, losses, ties = counts.get("wins"), counts.get("losses"), counts.get("ties")
    return f"{plural(wins, 'win', 'wins')}, {plural(losses, 'loss', 'losses')}, {plural(ties, 'tie', 'ties')}"


def _label(category: str) -> str:
    return category.replace("_", " ")


def model_roles(results: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The candidate (fine-tuned) and baseline entries of ``results["models"]`` (by the comparison's names,
    else by role)."""
    models = [m for m in results.get("models") or [] if isinstance(m, dict)]
    comparison = results.get("comparison") or {}

    def pick(name: Any, role: str) -> dict[str, Any] | None:
        named = next((m for m in models if name and m.get("name") == name), None)
        return named or next((m for m in models if m.get("role") == role), None)

    return pick(comparison.get("candidate"), "candidate"), pick(comparison.get("baseline"), "baseline")


def headline_numbers(results: Mapping[str, Any]) -> dict[str, Any]:
    """The headline of a benchmark: both mean scores and tiers, the mean delta with its confidence interval, and
    the win rate (None where the results do not hold a number)."""
    candidate, baseline = model_roles(results)
    comparison = results.get("comparison") or {}
    cand = (candidate or {}).get("summary") or {}
    base = (baseline or {}).get("summary") or {}
    cand_mean, base_mean = _num(cand.get("mean_score")), _num(base.get("mean_score"))
    tier = tier_for(cand_mean) if cand_mean is not None else None
    return {
        "candidate": (candidate or {}).get("name") or comparison.get("candidate"),
        "baseline": (baseline or {}).get("name") or comparison.get("baseline"),
        "candidate_mean": cand_mean,
        "baseline_mean": base_mean,
        "candidate_tier": tier.name if tier else cand.get("tier"),
        "baseline_tier": tier_for(base_mean).name if base_mean is not None else base.get("tier"),
        "tier_meaning": tier.meaning if tier else None,
        "mean_delta": _num(comparison.get("mean_delta")),
        "ci_low": _num(comparison.get("ci_low")),
        "ci_high": _num(comparison.get("ci_high")),
        "confidence": _num(comparison.get("confidence")),
        "win_rate": _num(comparison.get("win_rate")),
        "wins": comparison.get("wins"),
        "losses": comparison.get("losses"),
        "ties": comparison.get("ties"),
        "prompts": comparison.get("prompts"),
    }


def format_headline(headline: Mapping[str, Any]) -> str:
    """One line: fine-tuned vs base mean score, the mean delta with its CI, and the win rate."""
    parts = [
        f"fine-tuned {headline.get('candidate')}: {_fmt(headline.get('candidate_mean'))} "
        f"({headline.get('candidate_tier') or 'n/a'}) vs base {headline.get('baseline')}: "
        f"{_fmt(headline.get('baseline_mean'))}"
    ]
    if headline.get("mean_delta") is not None:
        level = _num(headline.get("confidence"))
        ci = f"{level:.0%} CI" if level is not None else "CI"
        parts.append(
            f"mean delta {_signed(headline['mean_delta'])} points "
            f"({ci} {_signed(headline.get('ci_low'))} to {_signed(headline.get('ci_high'))})"
        )
    if headline.get("win_rate") is not None:
        parts.append(
            f"win rate {_pct(headline['win_rate'])} ({_wins_losses_ties(headline)} over {headline.get('prompts')} "
            "prompts)"
        )
    return "; ".join(parts)


def tier_verdict(headline: Mapping[str, Any]) -> list[str]:
    """Sentences on the fine-tuned model's tier (and what it means) and on whether it beats its base."""
    mean = _num(headline.get("candidate_mean"))
    if mean is None:
        return ["No score for the fine-tuned model: the evaluation produced no scored answers."]
    tier = tier_for(mean)
    upper = next((t.minimum for t in reversed(TIERS) if t.minimum > tier.minimum), 100.0)
    lines = [
        f"Tier: {tier.name} (mean score {mean:.1f}; {tier.name} is {tier.minimum:g} to {upper:g}): {tier.meaning}."
    ]
    low, high = _num(headline.get("ci_low")), _num(headline.get("ci_high"))
    level = _num(headline.get("confidence"))
    ci = f"the {level:.0%} confidence interval" if level is not None else "the confidence interval"
    if low is None or high is None:
        lines.append("No paired comparison with the base model is available.")
    elif low > 0:
        lines.append(f"Better than its base: {ci} of the mean delta ({low:+.1f} to {high:+.1f}) lies above zero.")
    elif high < 0:
        lines.append(f"Worse than its base: {ci} of the mean delta ({low:+.1f} to {high:+.1f}) lies below zero.")
    else:
        lines.append(
            f"No difference from its base shown: {ci} of the mean delta ({low:+.1f} to {high:+.1f}) includes zero."
        )
    return lines


# ---------------------------------------------------------------------------------------- inputs


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def loss_series(training_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Training loss per logged step and validation loss at each evaluation, from ``metrics.jsonl``."""
    path = training_dir / "metrics.jsonl"
    train: list[tuple[float, float]] = []
    valid: list[tuple[float, float]] = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            step = _num(record.get("step"))
            if step is None:
                continue
            if _num(record.get("loss")) is not None:
                train.append((step, float(record["loss"])))
            if _num(record.get("val_loss")) is not None:
                valid.append((step, float(record["val_loss"])))
    return {"training loss": train, "validation loss": valid}


def _data_stats(data_dir: Path) -> dict[str, Any]:
    stats = _read_json(data_dir / "stats.json")
    if stats or not data_dir.is_dir():
        return stats
    from equitune.data.pipeline import folder_stats
    from equitune.errors import DataError

    try:
        return folder_stats(data_dir)
    except DataError:
        return {}


def example_prompts(results: Mapping[str, Any], count: int = 3) -> list[tuple[str, str, float]]:
    """Up to ``count`` held-out prompts to show both models' answers for: the largest, the median and the smallest
    score delta (fine-tuned minus base). Returns (prompt id, why chosen, delta)."""
    deltas = [d for d in (results.get("comparison") or {}).get("deltas") or [] if _num(d.get("delta")) is not None]
    if not deltas:  # no comparison block: pair the two models' scores per prompt
        candidate, baseline = model_roles(results)
        scores: dict[tuple[Any, Any], list[float]] = {}
        for output in results.get("outputs") or []:
            if _num(output.get("score")) is not None:
                scores.setdefault((output.get("model"), output.get("prompt_id")), []).append(float(output["score"]))
        cand, base = (candidate or {}).get("name"), (baseline or {}).get("name")
        for prompt in results.get("prompts") or []:
            pid = prompt.get("id")
            if (cand, pid) in scores and (base, pid) in scores:
                delta = statistics.fmean(scores[(cand, pid)]) - statistics.fmean(scores[(base, pid)])
                deltas.append({"prompt_id": pid, "delta": delta})
    ordered = sorted(deltas, key=lambda d: (-float(d["delta"]), str(d["prompt_id"])))
    if not ordered:
        return []
    picks = [(ordered[0], "largest gain"), (ordered[len(ordered) // 2], "median"), (ordered[-1], "smallest gain")]
    chosen: list[tuple[str, str, float]] = []
    for delta, why in picks:
        if all(pid != delta["prompt_id"] for pid, _, _ in chosen):
            chosen.append((str(delta["prompt_id"]), why, float(delta["delta"])))
    return chosen[:count]


def answer_scores(results: Mapping[str, Any]) -> dict[str, list[float]]:
    """Every scored answer's score per model, base first (``base (NAME)``, ``fine-tuned (NAME)``), for the score
    distribution; a score of 0 counts like any other."""
    candidate, baseline = model_roles(results)
    base_name, cand_name = (baseline or {}).get("name") or "base", (candidate or {}).get("name") or "fine-tuned"
    scores: dict[str, list[float]] = {}
    for entry, label in ((baseline, f"base ({base_name})"), (candidate, f"fine-tuned ({cand_name})")):
        name = (entry or {}).get("name")
        scores[label] = [
            float(o["score"])
            for o in results.get("outputs") or []
            if o.get("model") == name and _num(o.get("score")) is not None
        ]
    return scores


def _answer(results: Mapping[str, Any], model: str | None, prompt_id: str) -> dict[str, Any] | None:
    answers = [o for o in results.get("outputs") or [] if o.get("model") == model and o.get("prompt_id") == prompt_id]
    return min(answers, key=lambda o: o.get("sample") or 0) if answers else None


# ---------------------------------------------------------------------------------------- building blocks


@dataclass
class _Document:
    """The report assembled twice over, as HTML sections and as Markdown sections, plus its chart files."""

    html_parts: list[str] = field(default_factory=list)
    md_parts: list[str] = field(default_factory=list)
    charts: dict[str, str] = field(default_factory=dict)

    def section(self, title: str, html_body: str, md_body: str) -> None:
        self.html_parts.append(h.section(title, html_body))
        self.md_parts.append(f"## {title}\n\n{md_body.strip()}\n")

    def chart(self, name: str, svg: str, caption: str) -> tuple[str, str]:
        """The chart inline for HTML and as an image link to ``report_files/<name>.svg`` for Markdown."""
        self.charts[name] = svg
        html_part = f'<figure class="chart">{svg}<figcaption class="muted">{h.esc(caption)}</figcaption></figure>'
        md_part = f"![{caption}]({CHARTS_DIR}/{name}.svg)\n"
        return html_part, md_part


def _both_tables(headers: list[str], rows: list[list[object]], numeric: set[int] | None = None) -> tuple[str, str]:
    return h.table(headers, rows, numeric=numeric), h.markdown_table(headers, rows)


def _fence(text: str) -> str:
    """A fenced Markdown block longer than any run of backticks inside ``text``."""
    longest, run = 0, 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text.rstrip()}\n{fence}\n"


def _paragraphs(lines: Sequence[str]) -> tuple[str, str]:
    return "".join(f"<p>{h.esc(line)}</p>" for line in lines), "\n\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- sections


def _summary_section(doc: _Document, results: Mapping[str, Any], export_info: Mapping[str, Any] | None) -> None:
    headline = headline_numbers(results)
    lines = [format_headline(headline) + "."]
    lines += tier_verdict(headline)
    if export_info and export_info.get("name_tag"):
        name = export_info["name_tag"]
        if export_info.get("created_in_ollama"):
            lines.append(f"The model is created in Ollama as {name}: run it with `ollama run {name}`.")
        else:
            lines.append(
                f"The model is registered as {name} for the embedded llama.cpp runtime: "
                f"`equitune chat {name}` or `equitune serve {name}`."
            )
            if export_info.get("instructions"):
                lines.append(f"To create it in Ollama later: `{export_info['instructions']}`")
    settings = results.get("settings") or {}
    if settings.get("prompts_source"):
        lines.append(f"Held-out prompts: {settings['prompts_source']}.")
    html_body, md_body = _paragraphs(lines)
    doc.section("Summary", html_body, md_body)


def _benchmark_section(doc: _Document, results: Mapping[str, Any]) -> None:
    candidate, baseline = model_roles(results)
    cand = (candidate or {}).get("summary") or {}
    base = (baseline or {}).get("summary") or {}
    cand_gen = (candidate or {}).get("generation") or {}
    base_gen = (baseline or {}).get("generation") or {}
    comparison = results.get("comparison") or {}
    cat_cmp = comparison.get("categories") or {}

    def delta(a: Any, b: Any, pattern: str = "{:+.1f}") -> str:
        x, y = _num(a), _num(b)
        return pattern.format(x - y) if x is not None and y is not None else "n/a"

    def rate_delta(a: Any, b: Any) -> str:
        x, y = _num(a), _num(b)
        return f"{(x - y) * 100:+.1f} pts" if x is not None and y is not None else "n/a"

    base_name = (baseline or {}).get("name") or "base"
    cand_name = (candidate or {}).get("name") or "fine-tuned"
    headers = ["metric", f"base ({base_name})", f"fine-tuned ({cand_name})", "difference"]
    rows: list[list[object]] = [
        [
            "mean score (0-100)",
            _fmt(base.get("mean_score")),
            _fmt(cand.get("mean_score")),
            delta(cand.get("mean_score"), base.get("mean_score")),
        ],
        ["score std", _fmt(base.get("std_score")), _fmt(cand.get("std_score")), ""],
        ["tier", base.get("tier") or "n/a", cand.get("tier") or "n/a", ""],
    ]
    for category in CATEGORIES:
        b, c = (base.get("categories") or {}).get(category), (cand.get("categories") or {}).get(category)
        rows.append([f"{_label(category)} (sub-score)", _fmt(b), _fmt(c), delta(c, b)])
    for rate in RATES:
        b, c = base.get(rate), cand.get(rate)
        rows.append([RATE_LABELS[rate], _pct(b), _pct(c), rate_delta(c, b)])
    for key, label in (("figures", "figures checked"), ("unsupported", "unsupported figures")):
        rows.append([label, _fmt(base.get(key), "{:.0f}"), _fmt(cand.get(key), "{:.0f}"), ""])
    rows.append(
        [
            "derived figures wrong",
            _fmt(base.get("derived_wrong"), "{:.0f}"),
            _fmt(cand.get("derived_wrong"), "{:.0f}"),
            "",
        ]
    )
    for key, label in (
        ("misbound", "figures in a unit their quantity never has"),
        ("unattributed", "figures bound to no quantity"),
        ("repetitive", "answers capped for repetition"),
    ):
        rows.append([label, _fmt(base.get(key), "{:.0f}"), _fmt(cand.get(key), "{:.0f}"), ""])
    rows.append(
        [
            "repetition (mean)",
            _pct(base.get("repetition")),
            _pct(cand.get("repetition")),
            rate_delta(cand.get("repetition"), base.get("repetition")),
        ]
    )
    rows.append(["answers scored", _fmt(base.get("outputs"), "{:.0f}"), _fmt(cand.get("outputs"), "{:.0f}"), ""])
    rows.append(["generation speed (tokens/s)", _fmt(generation_rate(base_gen)), _fmt(generation_rate(cand_gen)), ""])
    rows.append(
        [
            "answers cut at max tokens",
            _fmt(base_gen.get("truncated"), "{:.0f}"),
            _fmt(cand_gen.get("truncated"), "{:.0f}"),
            "",
        ]
    )
    html_table, md_table = _both_tables(headers, rows, numeric={1, 2, 3})

    html_body, md_body = html_table, md_table
    if comparison:
        level = _num(comparison.get("confidence"))
        ci = f"{level:.0%} CI" if level is not None else "CI"
        cmp_headers = ["score", "mean delta", f"{ci} low", f"{ci} high"]
        cmp_rows: list[list[object]] = [
            [
                "total",
                _signed(comparison.get("mean_delta")),
                _signed(comparison.get("ci_low")),
                _signed(comparison.get("ci_high")),
            ]
        ]
        labels, values, lows, highs = [], [], [], []
        if all(_num(comparison.get(k)) is not None for k in ("mean_delta", "ci_low", "ci_high")):
            labels.append("total")
            values.append(float(comparison["mean_delta"]))
            lows.append(float(comparison["ci_low"]))
            highs.append(float(comparison["ci_high"]))
        for category in CATEGORIES:
            entry = cat_cmp.get(category) or {}
            cmp_rows.append(
                [
                    _label(category),
                    _signed(entry.get("mean_delta")),
                    _signed(entry.get("ci_low")),
                    _signed(entry.get("ci_high")),
                ]
            )
            if all(_num(entry.get(k)) is not None for k in ("mean_delta", "ci_low", "ci_high")):
                labels.append(_label(category))
                values.append(float(entry["mean_delta"]))
                lows.append(float(entry["ci_low"]))
                highs.append(float(entry["ci_high"]))
        resamples = comparison.get("resamples")
        paired = (
            f"Paired over {comparison.get('prompts')} prompts x {comparison.get('samples')} sample(s); "
            f"bootstrap of the mean delta with {resamples} resamples. Win rate {_pct(comparison.get('win_rate'))}: "
            f"{_wins_losses_ties(comparison)}."
        )
        cmp_html, cmp_md = _both_tables(cmp_headers, cmp_rows, numeric={1, 2, 3})
        chart_html, chart_md = doc.chart(
            "score_deltas",
            charts.error_bar_chart(
                labels, values, lows, highs, title=f"Fine-tuned minus base, mean and {ci}", x_label="score points"
            ),
            f"Mean score delta (fine-tuned minus base) with its {ci}",
        )
        html_body += f"<h3>Fine-tuned minus base</h3><p>{h.esc(paired)}</p>{cmp_html}{chart_html}"
        md_body += f"\n### Fine-tuned minus base\n\n{paired}\n\n{cmp_md}\n{chart_md}"
    doc.section("Benchmark: base vs fine-tuned", html_body, md_body)

    # -- sub-scores, fact-check rates and the distribution of scores
    sub_html, sub_md = doc.chart(
        "sub_scores",
        charts.bar_chart(
            [_label(c) for c in CATEGORIES],
            {
                f"base ({base_name})": [_num((base.get("categories") or {}).get(c)) for c in CATEGORIES],
                f"fine-tuned ({cand_name})": [_num((cand.get("categories") or {}).get(c)) for c in CATEGORIES],
            },
            title="Rubric sub-scores (0-100)",
            y_label="score",
            y_max=100,
        ),
        "Mean rubric sub-score per category, base vs fine-tuned",
    )
    doc.section("Sub-scores", sub_html, sub_md)

    def as_pct(value: Any) -> float | None:
        number = _num(value)
        return number * 100 if number is not None else None

    fact_html, fact_md = doc.chart(
        "fact_check",
        charts.bar_chart(
            [RATE_LABELS[r] for r in RATES],
            {
                f"base ({base_name})": [as_pct(base.get(r)) for r in RATES],
                f"fine-tuned ({cand_name})": [as_pct(cand.get(r)) for r in RATES],
            },
            title="Fact-check rates (%)",
            y_label="percent",
            y_max=100,
            value_format="{:.1f}%",
        ),
        "Share of figures unsupported by the data (hallucinated), derived figures computed wrongly, "
        "and key facts covered",
    )
    note = (
        "Every figure in an answer is checked against the company's data: a hallucinated figure matches nothing in "
        "the data, a derived-figure error is a ratio or growth rate computed wrongly, and key-fact coverage is the "
        "share of the prompt's key facts the answer states. Lower is better for the first two, higher for the third."
    )
    doc.section("Fact-check rates", f"<p>{h.esc(note)}</p>{fact_html}", f"{note}\n\n{fact_md}")

    scores = answer_scores(results)
    if any(scores.values()):
        dist_html, dist_md = doc.chart(
            "score_distribution",
            charts.histogram(scores, bins=list(SCORE_BINS), title="Scores per answer"),
            "How many answers fall in each 10-point score band",
        )
        doc.section("Score distribution", dist_html, dist_md)


def _examples_section(doc: _Document, results: Mapping[str, Any]) -> None:
    candidate, baseline = model_roles(results)
    cand_name, base_name = (candidate or {}).get("name"), (baseline or {}).get("name")
    prompts = {p.get("id"): p for p in results.get("prompts") or []}
    html_parts: list[str] = []
    md_parts: list[str] = []
    for number, (prompt_id, why, delta) in enumerate(example_prompts(results), start=1):
        prompt = prompts.get(prompt_id) or {}
        base_answer, cand_answer = _answer(results, base_name, prompt_id), _answer(results, cand_name, prompt_id)
        if base_answer is None or cand_answer is None:
            continue
        title = (
            f"Example {number}: {prompt.get('ticker') or ''} {_label(str(prompt.get('task') or ''))} "
            f"({prompt.get('condition') or 'base'}) - {why}, {delta:+.1f} points"
        )
        base_title = f"base ({base_name}): score {_fmt(base_answer.get('score'))}, {base_answer.get('tier') or ''}"
        cand_title = (
            f"fine-tuned ({cand_name}): score {_fmt(cand_answer.get('score'))}, {cand_answer.get('tier') or ''}"
        )
        prompt_text = str(prompt.get("prompt") or "")
        html_parts.append(
            f"<h3>{h.esc(title)}</h3>"
            f"<details><summary>Prompt {h.esc(prompt_id)}</summary>{h.pre(prompt_text)}</details>"
            + h.side_by_side(
                base_title, str(base_answer.get("text") or ""), cand_title, str(cand_answer.get("text") or "")
            )
        )
        md_parts.append(
            f"### {title}\n\nPrompt {prompt_id}:\n\n{_fence(prompt_text)}\n"
            f"**{base_title}**\n\n{_fence(str(base_answer.get('text') or ''))}\n"
            f"**{cand_title}**\n\n{_fence(str(cand_answer.get('text') or ''))}"
        )
    if not html_parts:
        doc.section(
            "Example outputs", "<p>No prompt was answered by both models.</p>", "No prompt was answered by both models."
        )
        return
    intro = (
        "The same held-out prompts answered by both models: the prompts with the largest, the median and the "
        "smallest score difference (fine-tuned minus base)."
    )
    doc.section("Example outputs", f"<p>{h.esc(intro)}</p>" + "".join(html_parts), intro + "\n\n" + "\n".join(md_parts))


def _training_section(doc: _Document, training_dir: Path) -> None:
    series = loss_series(training_dir)
    chart_html, chart_md = doc.chart(
        "loss_curves",
        charts.line_chart(
            series,
            title="Training and validation loss",
            x_label="optimiser step",
            y_label="cross-entropy",
            markers=len(series["training loss"]) < 40,
        ),
        "Training loss per step and validation loss at each evaluation (assistant tokens only)",
    )
    report = _read_json(training_dir / "training_report.json")
    examples = report.get("examples") or {}
    rows: list[list[object]] = [
        ["base model", report.get("base_model") or "n/a"],
        ["backend, precision", f"{report.get('backend') or 'n/a'}, {report.get('precision') or 'n/a'}"],
        ["examples (train / valid)", f"{examples.get('train', 'n/a')} / {examples.get('valid', 'n/a')}"],
        ["optimiser steps", f"{report.get('steps', 'n/a')} of {report.get('total_steps', 'n/a')}"],
        ["epochs", _fmt(report.get("epochs"), "{:.2f}")],
        ["tokens trained on", _fmt(report.get("tokens"), "{:,.0f}")],
        ["training speed (tokens/s)", _fmt(report.get("tokens_per_s"), "{:,.0f}")],
        ["wall time (s)", _fmt(report.get("wall_time_s"), "{:,.0f}")],
        ["trainable parameters", _fmt(report.get("trainable_parameters"), "{:,.0f}")],
        [
            "training loss (first → last)",
            f"{_fmt(report.get('train_loss_first'), '{:.4f}')} → {_fmt(report.get('train_loss_last'), '{:.4f}')}",
        ],
        [
            "validation loss (before → after)",
            f"{_fmt(report.get('val_loss_before'), '{:.4f}')} → {_fmt(report.get('val_loss_after'), '{:.4f}')}",
        ],
        ["best validation loss (step)", f"{_fmt(report.get('best_val_loss'), '{:.4f}')} ({report.get('best_step')})"],
        ["stopped early", "yes" if report.get("stopped_early") else "no"],
    ]
    table_html, table_md = _both_tables(["training", "value"], rows)
    doc.section("Training", chart_html + table_html, chart_md + "\n" + table_md)


def _data_section(doc: _Document, data_dir: Path) -> None:
    stats = _data_stats(data_dir)
    if not stats:
        doc.section(
            "Training data", f"<p>No statistics found in {h.esc(data_dir)}.</p>", f"No statistics in {data_dir}."
        )
        return
    html_body, md_body = "", ""
    splits = stats.get("splits") or {}
    companies = stats.get("companies") or {}
    split_rows: list[list[object]] = [
        [name, count, len(companies[name]) if isinstance(companies.get(name), list) else "n/a"]
        for name, count in splits.items()
    ]
    part_html, part_md = _both_tables(["split", "examples", "companies"], split_rows, numeric={1, 2})
    html_body += part_html
    md_body += part_md + "\n"
    for key, singular in (
        ("families", "family"),
        ("ratings", "rating"),
        ("conditions", "condition"),
        ("sectors", "sector"),
    ):
        counts = stats.get(key) or {}
        if not counts:
            continue
        rows: list[list[object]] = [[name, n] for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        part_html, part_md = _both_tables([singular, "examples"], rows, numeric={1})
        html_body += part_html
        md_body += part_md + "\n"
    tokens = stats.get("response_tokens") or {}
    facts = [
        f"Examples: {stats.get('examples', sum(splits.values()))}; split by company, so no test company is trained on.",
        "Response length (estimated tokens): "
        + ", ".join(f"{k} {tokens[k]}" for k in ("min", "p50", "p90", "max", "mean") if k in tokens),
    ]
    if "figures_checked" in stats:
        facts.append(
            f"Figures checked against the data: {stats['figures_checked']}; "
            f"unsupported: {stats.get('unsupported_figures', 0)}."
        )
    duplicates = (stats.get("near_duplicates") or {}).get("count")
    if duplicates is not None:
        facts.append(f"Near-duplicate responses across splits: {duplicates}.")
    fact_html, fact_md = _paragraphs(facts)
    doc.section("Training data", fact_html + html_body, fact_md + "\n" + md_body)


def _links_section(
    doc: _Document,
    out_dir: Path,
    results: Mapping[str, Any],
    evaluation_dir: Path | None,
    training_dir: Path,
    data_dir: Path,
    export_info: Mapping[str, Any] | None,
) -> None:
    entries: list[tuple[str, Path]] = []
    if evaluation_dir is not None:
        for name in ("results.json", "summary.md", "report.html"):  # what evaluate's write_results writes
            if (evaluation_dir / name).exists():
                entries.append((f"evaluation {results.get('run') or ''}: {name}", evaluation_dir / name))
        entries.append(("evaluation results folder", evaluation_dir))
    entries.append(("training run folder", training_dir))
    entries.append(("training data folder", data_dir))
    if export_info and export_info.get("export_dir"):
        entries.append(("exported GGUF files and Modelfile", Path(export_info["export_dir"])))
    html_items, md_items = [], []
    for label, path in entries:
        relative = Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix()
        html_items.append(f'<li>{h.esc(label)}: <a href="{h.esc(relative)}">{h.esc(relative)}</a></li>')
        md_items.append(f"- {label}: [{relative}]({relative.replace(' ', '%20')})")
    doc.section("Files", "<ul>" + "".join(html_items) + "</ul>", "\n".join(md_items))


# ---------------------------------------------------------------------------------------- the report


def write_performance_report(
    out_dir: Path,
    *,
    training_dir: Path,
    data_dir: Path,
    results: dict[str, Any],
    export_info: dict[str, Any] | None,
    evaluation_dir: Path | None = None,
) -> dict[str, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (with its charts in ``report_files/``) into
    ``out_dir``: summary and tier verdict, benchmark table base vs fine-tuned with the mean delta's confidence
    interval and win rate, sub-score and fact-check charts, two or three side-by-side example answers, loss
    curves, data statistics and links to the evaluation folder. Returns the paths by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = _Document()
    _summary_section(doc, results, export_info)
    _benchmark_section(doc, results)
    _examples_section(doc, results)
    _training_section(doc, Path(training_dir))
    _data_section(doc, Path(data_dir))
    _links_section(doc, out_dir, results, evaluation_dir, Path(training_dir), Path(data_dir), export_info)

    headline = headline_numbers(results)
    title = "Fine-tuning performance report"
    subtitle = (
        f"{headline.get('candidate') or 'fine-tuned model'} vs its base {headline.get('baseline') or 'model'}; "
        f"evaluation {results.get('run') or ''} ({results.get('created') or ''})"
    )
    chart_dir = out_dir / CHARTS_DIR
    for name, svg in doc.charts.items():
        atomic_write_text(chart_dir / f"{name}.svg", svg)
    html_path = atomic_write_text(out_dir / HTML_FILE, h.page(title, "\n".join(doc.html_parts), subtitle=subtitle))
    markdown = f"# {title}\n\n{subtitle}\n\n" + "\n".join(doc.md_parts)
    md_path = atomic_write_text(out_dir / MARKDOWN_FILE, markdown)
    return {"html": html_path, "markdown": md_path, "charts": chart_dir}
