"""Time ``analyze_company`` over every embedded company: the finance engine must value the whole snapshot in
under a second in one process, so report generation and training-data building never wait on it.

Usage: ``python benchmarks/analyze_speed.py [--repeats 5] [--json results.json]``. Prints a table; exits 1
when the slowest pass over all companies takes 1 s or more.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from equitune.finance import analyze_company
from equitune.io import atomic_write_json
from equitune.market.providers.embedded import EmbeddedProvider

TARGET_SECONDS = 1.0


def measure(repeats: int) -> dict[str, Any]:
    """Load the embedded snapshot once, then analyse every company ``repeats`` times; the first pass is the
    cold one (first use of every pydantic model). Returns the timings as a JSON-ready dict."""
    start = time.perf_counter()
    universe = EmbeddedProvider().companies()
    load_seconds = time.perf_counter() - start
    if not universe:
        raise SystemExit("the embedded snapshot holds no companies")

    passes: list[float] = []
    per_company: dict[str, list[float]] = {c.ticker: [] for c in universe}
    for _ in range(repeats):
        pass_start = time.perf_counter()
        for company in universe:
            t0 = time.perf_counter()
            analyze_company(company, universe)
            per_company[company.ticker].append(time.perf_counter() - t0)
        passes.append(time.perf_counter() - pass_start)

    slowest_ticker = max(per_company, key=lambda t: max(per_company[t]))
    n = len(universe)
    worst = max(passes)
    return {
        "companies": n,
        "sectors": len({c.sector for c in universe}),
        "repeats": repeats,
        "load_seconds": load_seconds,
        "first_pass_seconds": passes[0],
        "median_pass_seconds": statistics.median(passes),
        "best_pass_seconds": min(passes),
        "worst_pass_seconds": worst,
        "ms_per_company": statistics.median(passes) / n * 1000,
        "slowest_company": slowest_ticker,
        "slowest_company_ms": max(per_company[slowest_ticker]) * 1000,
        "target_seconds": TARGET_SECONDS,
        "passed": worst < TARGET_SECONDS,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "per_company_median_ms": {t: statistics.median(v) * 1000 for t, v in sorted(per_company.items())},
    }


def render(result: dict[str, Any], console: Console) -> None:
    """Print the timings as a table."""
    table = Table(title="analyze_company over the embedded snapshot")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("companies (sectors)", f"{result['companies']} ({result['sectors']})"),
        ("repeats", str(result["repeats"])),
        ("snapshot load, s", f"{result['load_seconds']:.3f}"),
        ("first (cold) pass, s", f"{result['first_pass_seconds']:.3f}"),
        ("median pass, s", f"{result['median_pass_seconds']:.3f}"),
        ("worst pass, s", f"{result['worst_pass_seconds']:.3f}"),
        ("ms per company (median)", f"{result['ms_per_company']:.2f}"),
        ("slowest company, ms", f"{result['slowest_company']} {result['slowest_company_ms']:.2f}"),
        ("target", f"every pass < {result['target_seconds']:.0f} s"),
        ("result", "[green]PASS[/green]" if result["passed"] else "[red]FAIL[/red]"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write JSON when asked; 0 when under target, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5, help="passes over all companies (default 5)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the timings to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    result = measure(args.repeats)
    render(result, Console())
    if args.json_path:
        atomic_write_json(args.json_path, result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
