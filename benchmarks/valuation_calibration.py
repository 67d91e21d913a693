"""How the finance engine's calls look over the embedded universe, as an analyst would read them: the spread of
upside to the price target, the rating counts, the target method per sector, every extreme target with the reason
the analysis states for it, and what each share price implies: the revenue growth or FCF margin under the DCF
(reverse DCF), the ROE under the excess-return model, the dividend growth under the dividend-discount model.

Checks (issue 15's calibration, met by method, never by tuning a constant): the median upside lies between -5% and
+15%, no rating holds more than 60% of the companies, and every target below -50% or above +100% carries a stated
reason in the analysis' warnings.

Usage: ``python benchmarks/valuation_calibration.py [--set valuation.KEY=VALUE ...] [--json results.json]``.
Prints the tables; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from equitune.config import EquituneConfig
from equitune.finance import ValuationAssumptions, analyze_company
from equitune.finance.base import quantile
from equitune.io import atomic_write_json
from equitune.market.providers.embedded import EmbeddedProvider

MEDIAN_RANGE = (-0.05, 0.15)
MAX_RATING_SHARE = 0.60
FAR_BELOW, FAR_ABOVE = -0.50, 1.00


def _assumptions(sets: list[str]) -> ValuationAssumptions:
    overrides: dict[str, Any] = {}
    for item in sets:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if section != "valuation" or not name:
            raise SystemExit(f"--set takes valuation.KEY=VALUE, not '{item}'")
        overrides[name] = value
    return EquituneConfig.model_validate({"valuation": overrides}).valuation


def measure(assumptions: ValuationAssumptions) -> dict[str, Any]:
    universe = EmbeddedProvider().companies()
    rows = []
    for company in universe:
        a = analyze_company(company, universe, assumptions)
        extreme = a.upside is not None and not FAR_BELOW <= a.upside <= FAR_ABOVE
        reasons = [w for w in a.warnings if "price target is" in w] if extreme else []
        implied = a.reverse_dcf
        rows.append(
            {
                "ticker": a.ticker,
                "sector": a.sector,
                "price": a.market.price,
                "target": a.price_target,
                "upside": a.upside,
                "rating": a.rating,
                "method": a.target.method,
                "intrinsic_method": a.method,
                "implied": a.implied,
                "implied_roe": a.excess_return.implied_roe if a.excess_return else None,
                "implied_dividend_growth": a.dividend_discount.implied_dividend_growth if a.dividend_discount else None,
                "wacc": a.wacc.wacc,
                "dcf_value_per_share": a.target.dcf_value_per_share,
                "comps_value_per_share": a.target.comps_value_per_share,
                "model_initial_growth": implied.model_initial_growth if implied else None,
                "implied_initial_growth": implied.implied_initial_growth if implied else None,
                "implied_fcf_margin": implied.implied_fcf_margin if implied else None,
                "extreme": extreme,
                "reasons": reasons,
            }
        )
    upsides = sorted(r["upside"] for r in rows if r["upside"] is not None)
    ratings = collections.Counter(r["rating"] or "none" for r in rows)
    methods: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in rows:
        methods[r["sector"]][f"{r['intrinsic_method']} ({r['method'].replace('_', ' ')})"] += 1
    median = statistics.median(upsides)
    unexplained = [r["ticker"] for r in rows if r["extreme"] and not r["reasons"]]
    largest_share = max(ratings.values()) / len(rows)
    checks = {
        "median_upside_in_range": MEDIAN_RANGE[0] <= median <= MEDIAN_RANGE[1],
        "no_rating_over_60_percent": largest_share <= MAX_RATING_SHARE,
        "every_extreme_explained": not unexplained,
    }
    return {
        "companies": len(rows),
        "assumptions": assumptions.model_dump(mode="json"),
        "upside": {
            "median": median,
            "mean": statistics.fmean(upsides),
            "q1": quantile(upsides, 0.25),
            "q3": quantile(upsides, 0.75),
            "below_minus_50": sum(u < FAR_BELOW for u in upsides),
            "above_plus_100": sum(u > FAR_ABOVE for u in upsides),
        },
        "ratings": dict(ratings),
        "largest_rating_share": largest_share,
        "methods_by_sector": {sector: dict(counts) for sector, counts in sorted(methods.items())},
        "unexplained_extremes": unexplained,
        "checks": checks,
        "passed": all(checks.values()),
        "rows": rows,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def render(result: dict[str, Any], console: Console) -> None:
    u = result["upside"]
    summary = Table(title=f"Valuation calibration over {result['companies']} embedded companies")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_column("check")
    checks = result["checks"]
    summary.add_row(
        "median upside", _pct(u["median"]), "PASS" if checks["median_upside_in_range"] else "FAIL (-5%..+15%)"
    )
    summary.add_row("mean upside", _pct(u["mean"]), "")
    summary.add_row("quartiles", f"{_pct(u['q1'])} / {_pct(u['q3'])}", "")
    summary.add_row("targets below -50% / above +100%", f"{u['below_minus_50']} / {u['above_plus_100']}", "")
    ratings = ", ".join(f"{k} {v}" for k, v in sorted(result["ratings"].items()))
    summary.add_row("ratings", ratings, "PASS" if checks["no_rating_over_60_percent"] else "FAIL (one rating over 60%)")
    unexplained = result["unexplained_extremes"]
    summary.add_row(
        "extremes without a stated reason",
        str(len(unexplained)),
        "PASS" if checks["every_extreme_explained"] else f"FAIL ({', '.join(unexplained)})",
    )
    console.print(summary)

    methods = Table(title="Valuation method by sector (intrinsic model, and how the target was formed)")
    methods.add_column("sector")
    methods.add_column("methods")
    for sector, counts in result["methods_by_sector"].items():
        methods.add_row(sector, ", ".join(f"{m} {n}" for m, n in sorted(counts.items())))
    console.print(methods)

    companies = Table(title="Per company: upside and what the price implies (reverse DCF)")
    for column in (
        "ticker",
        "sector",
        "upside",
        "rating",
        "WACC",
        "DCF growth y1",
        "implied growth y1",
        "implied FCF m.",
        "implied (sector model)",
    ):
        companies.add_column(column, justify="left" if column in ("ticker", "sector", "rating") else "right")
    for r in sorted(result["rows"], key=lambda row: row["upside"] if row["upside"] is not None else 0.0):
        companies.add_row(
            r["ticker"],
            r["sector"],
            _pct(r["upside"]),
            r["rating"] or "-",
            f"{r['wacc']:.1%}",
            _pct(r["model_initial_growth"]),
            _pct(r["implied_initial_growth"]),
            "-" if r["implied_fcf_margin"] is None else f"{r['implied_fcf_margin']:.1%}",
            f"ROE {r['implied_roe']:.1%}"
            if r["implied_roe"] is not None
            else f"div. growth {r['implied_dividend_growth']:.1%}"
            if r["implied_dividend_growth"] is not None
            else "-",
        )
    console.print(companies)
    extremes = [r for r in result["rows"] if r["extreme"]]
    if extremes:
        console.print("[bold]Extreme targets and the reasons stated for them:[/bold]")
        for r in extremes:
            console.print(f"  {r['ticker']} {_pct(r['upside'])}: {'; '.join(r['reasons']) or 'NO REASON STATED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="valuation.KEY=VALUE")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    result = measure(_assumptions(args.set))
    render(result, Console(width=150))
    if args.json:
        atomic_write_json(args.json, result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
