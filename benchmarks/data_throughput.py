"""Training-data throughput: examples per second, every figure of every response validated, on one core.

The engine values every company under every market condition once (reported separately), then examples
are rendered and each response's figures are checked against the facts. Also times re-validating the saved
train file from disk (``equitune data validate``). Target: at least 2,000 examples/s including validation.

Usage: ``python benchmarks/data_throughput.py [--examples 5000] [--json results.json]``; exits 1 below target.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from equitune.data.generator import EquityResearchTrainingDataGenerator
from equitune.data.validate import validate_file
from equitune.io import atomic_write_json

TARGET_PER_SECOND = 2000.0


def measure(examples: int) -> dict[str, Any]:
    """Time context building, generation with validation, saving, and file validation."""
    start = time.perf_counter()
    generator = EquityResearchTrainingDataGenerator(seed=0)
    contexts = generator.contexts()
    context_seconds = time.perf_counter() - start

    start = time.perf_counter()
    generator.generate_dynamic_training_examples(examples)
    generate_seconds = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        summary = generator.save(Path(folder))
        save_seconds = time.perf_counter() - start
        start = time.perf_counter()
        report = validate_file(summary.files["train"])
        file_seconds = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(report.format())
    rate = examples / generate_seconds
    return {
        "examples": examples,
        "contexts": len(contexts),
        "families": len(generator.families),
        "figures_checked": generator.figures_checked,
        "context_seconds": round(context_seconds, 3),
        "generate_and_validate_seconds": round(generate_seconds, 3),
        "examples_per_second": round(rate, 1),
        "end_to_end_per_second": round(examples / (context_seconds + generate_seconds + save_seconds), 1),
        "save_seconds": round(save_seconds, 3),
        "file_validation_lines": report.lines,
        "file_validation_per_second": round(report.lines / file_seconds, 1),
        "target_per_second": TARGET_PER_SECOND,
        "passed": rate >= TARGET_PER_SECOND,
        "python": platform.python_version(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    result = measure(args.examples)
    table = Table(title="Training-data generation (one core)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("examples (families)", f"{result['examples']} ({result['families']})"),
        ("contexts: companies x conditions", str(result["contexts"])),
        ("engine: build contexts, s", f"{result['context_seconds']:.3f}"),
        ("generate + validate, s", f"{result['generate_and_validate_seconds']:.3f}"),
        ("figures checked", str(result["figures_checked"])),
        ("examples/s (generate + validate)", f"{result['examples_per_second']:,.0f}"),
        ("examples/s end to end (engine + save)", f"{result['end_to_end_per_second']:,.0f}"),
        ("re-validate train.jsonl, lines/s", f"{result['file_validation_per_second']:,.0f}"),
        ("target", f">= {TARGET_PER_SECOND:,.0f} examples/s"),
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
