"""Evaluation speed: scoring and fact-checking generated reports of the six task families in one process.

Generates ``--reports`` training responses (the generator's own, so each should score Excellent with no wrong
or unsupported figure), writes them as an outputs file (``equitune evaluate --score`` format), then times
``score_outputs_file`` end to end: reading and checking every line, building each (company, condition)
context with the finance engine (memoised), fact-checking every figure and scoring with the rubric. Then a
breakdown on fresh contexts: context building alone, fact-check alone, rubric (fact-check included). No torch,
nothing pinned: one ordinary Python process. Target: 1,000 reports in under 5 seconds end to end (wall time; the
process CPU time is printed beside it, as other work on the machine inflates the wall time).

Usage: ``python benchmarks/eval_speed.py [--reports 1000] [--seed 0] [--json results.json]``; exits 1 over target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from equitune.data import numbers
from equitune.data.generator import EquityResearchTrainingDataGenerator
from equitune.evaluate.factcheck import fact_check
from equitune.evaluate.rubric import score_report
from equitune.evaluate.scoring import ContextSource, paused_gc, read_outputs, score_outputs_file
from equitune.io import atomic_write_json, atomic_write_text

TARGET_SECONDS = 5.0


def write_outputs(reports: int, seed: int, path: Path) -> float:
    """Generate ``reports`` examples and write them as an outputs file; returns the seconds it took."""
    start = time.perf_counter()
    generator = EquityResearchTrainingDataGenerator(seed=seed)
    examples = generator.generate_dynamic_training_examples(reports)
    lines = [
        json.dumps(
            {
                "ticker": e.ticker,
                "task": e.family,
                "prompt": e.prompt,
                "output": e.response,
                "condition": e.condition,
                "model": "reference",
                "id": f"{i}",
            }
        )
        for i, e in enumerate(examples)
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return time.perf_counter() - start


def measure(reports: int, seed: int) -> dict[str, Any]:
    """Time scoring ``reports`` generated reports end to end, then each stage on fresh contexts."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "outputs.jsonl"
        generate_seconds = write_outputs(reports, seed, path)
        # The generator parsed these responses already; start the figure parser's line memo cold.
        numbers._LINES.clear()

        source = ContextSource()
        start, cpu = time.perf_counter(), time.process_time()
        scored = score_outputs_file(path, contexts=source)
        total_seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu

        # The breakdown, on fresh contexts, with the collector paused as score_outputs_file pauses it.
        fresh = ContextSource()
        records = read_outputs(path, fresh)
        with paused_gc():
            start = time.perf_counter()
            contexts = [fresh.get(r.ticker, r.condition) for r in records]
            context_seconds = time.perf_counter() - start
            start = time.perf_counter()
            for record, context in zip(records, contexts, strict=True):
                fact_check(record.output, context, family=record.task, prompt=record.prompt)
            factcheck_seconds = time.perf_counter() - start
            start = time.perf_counter()
            for record, context in zip(records, contexts, strict=True):
                score_report(record.output, record.task, context, prompt=record.prompt)
            rubric_seconds = time.perf_counter() - start

    scores = [s.score.score for s in scored]
    labels: Counter[str] = Counter()
    for s in scored:
        labels.update(s.score.fact_check.counts)
    figures = sum(labels.values())
    return {
        "reports": len(scored),
        "families": dict(Counter(s.task for s in scored)),
        "contexts": len(source),
        "figures": figures,
        "labels": dict(labels),
        "generate_seconds": round(generate_seconds, 3),
        "total_seconds": round(total_seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
        "ms_per_report": round(1000 * total_seconds / max(1, len(scored)), 3),
        "reports_per_second": round(len(scored) / total_seconds, 1),
        "context_seconds": round(context_seconds, 3),
        "factcheck_seconds": round(factcheck_seconds, 3),
        "rubric_seconds": round(rubric_seconds, 3),
        "min_score": round(min(scores), 2),
        "mean_score": round(statistics.fmean(scores), 2),
        "tiers": dict(Counter(s.score.tier for s in scored)),
        "target_seconds": TARGET_SECONDS,
        "scaled_to_1000_seconds": round(total_seconds * 1000 / max(1, len(scored)), 3),
        "passed": total_seconds * 1000 / max(1, len(scored)) < TARGET_SECONDS,
        "python": platform.python_version(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = measure(args.reports, args.seed)
    table = Table(title="Evaluation: rubric + fact-check (one process)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("reports (families)", f"{result['reports']} ({len(result['families'])})"),
        ("contexts: companies x conditions", str(result["contexts"])),
        ("figures labelled", f"{result['figures']:,}"),
        ("labels", ", ".join(f"{k} {v:,}" for k, v in sorted(result["labels"].items()))),
        ("end to end (read, engine, fact-check, rubric), s", f"{result['total_seconds']:.3f}"),
        ("  of which process CPU time, s", f"{result['cpu_seconds']:.3f}"),
        ("machine load (1 min) / CPUs", f"{result['load_average_1min']} / {result['cpu_count']}"),
        ("ms per report", f"{result['ms_per_report']:.2f}"),
        ("reports/s", f"{result['reports_per_second']:,.0f}"),
        ("breakdown, fresh contexts: engine contexts, s", f"{result['context_seconds']:.3f}"),
        ("  fact-check alone (cold fact sheets), s", f"{result['factcheck_seconds']:.3f}"),
        ("  rubric incl. fact-check (warm), s", f"{result['rubric_seconds']:.3f}"),
        ("scores: min / mean", f"{result['min_score']:.1f} / {result['mean_score']:.1f}"),
        ("tiers", ", ".join(f"{k} {v}" for k, v in result["tiers"].items())),
        ("(generating the reports, not timed), s", f"{result['generate_seconds']:.3f}"),
        ("target", f"< {TARGET_SECONDS:.0f} s per 1,000 reports"),
        ("result", "PASS" if result["passed"] else "FAIL"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)
    if args.json:
        atomic_write_json(args.json, result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
