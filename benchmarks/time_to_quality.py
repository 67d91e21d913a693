"""Time to quality: the held-out score of a recipe's model against minutes of training.

For each recipe (a workflow config such as ``configs/quickstart.json``) and each training precision asked for, this
generates the recipe's data, trains it once with a checkpoint every ``max_steps / --points`` steps (every checkpoint
kept), then exports each checkpoint's adapter as a merged f16 GGUF and scores it on the recipe's held-out prompts
with the product's own benchmark (greedy, the recipe's ``evaluation.*`` settings, the same rubric and fact-check as
``equitune evaluate``). Minute 0 is the base model itself. The minutes are the training loop's wall clock at the
checkpoint (``elapsed_s`` in ``metrics.jsonl``: model compile, the validation passes and checkpoint writes count,
as they do for a user; data generation, export and scoring do not).

Prints one table, writes the JSON (every point: step, minutes, mean score, per-family means, hallucination and
derived-error rates, answers cut at the token limit) and an SVG curve (mean score against minutes, one line per
recipe and precision, with the Good and Excellent thresholds).

Usage::

    python benchmarks/time_to_quality.py --recipe configs/quickstart.json [--recipe configs/other.json]
        [--precision int8 --precision fp32] [--points 4] [--work /tmp/equitune-ttq]
        [--json time_to_quality.json] [--svg time_to_quality.svg]

Needs the ``train`` and ``serve`` extras and llama.cpp's converter (as ``equitune run`` does). A recipe's own
``training.precision`` is used when ``--precision`` is not given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

GOOD, EXCELLENT = 65.0, 80.0


def _config(recipe: Path, work: Path, precision: str | None, points: int) -> Any:
    from equitune.config import load_config, read_config_file

    raw = read_config_file(recipe)
    steps = (raw.get("training") or {}).get("max_steps")
    if not steps:
        raise SystemExit(f"{recipe}: training.max_steps must be set (the checkpoints are spaced over it)")
    every = max(1, int(steps) // points)
    overrides: dict[str, Any] = {
        "training.save_steps": every,
        "training.keep_checkpoints": 0,
        "paths.training_data": str(work / "training_data"),
        "paths.finetuned_models": str(work / "finetuned_models"),
        "paths.evaluation_results": str(work / "evaluation_results"),
        "paths.finetuning_workflow": str(work / "finetuning_workflow"),
        "paths.logs": str(work / "logs"),
        "paths.registry": str(work / "finetuned_models" / "registry.sqlite"),
        "export.formats": ["f16"],
        "export.verify": False,
        "export.adapter_gguf": False,
    }
    if precision:
        overrides["training.precision"] = precision
    return load_config(recipe, overrides)


def _metrics(run_dir: Path) -> dict[int, float]:
    """Optimiser step -> seconds of training at that step (the last line of each step: its evaluation included)."""
    elapsed: dict[int, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        elapsed[int(row["step"])] = float(row["elapsed_s"])
    return elapsed


def _scored(run: Any, name: str) -> dict[str, Any]:
    model = next(m for m in run.results["models"] if m["name"] == name)
    summary = model["summary"]
    cut = sum(
        1 for o in run.results["outputs"] if o["model"] == name and o.get("finish_reason") == "length"
    )  # answers that reached evaluation.max_tokens
    return {
        "mean_score": summary["mean_score"],
        "tier": summary["tier"],
        "families": {family: block["mean_score"] for family, block in model["tasks"].items()},
        "hallucination_rate": summary["hallucination_rate"],
        "derived_error_rate": summary["derived_error_rate"],
        "outputs": summary["outputs"],
        "cut_at_limit": cut,
    }


def measure(recipe: Path, precision: str | None, points: int, work: Path) -> dict[str, Any]:
    from equitune.data.pipeline import generate_dataset
    from equitune.evaluate.benchmark import baseline_for, evaluate_models, model_entry
    from equitune.export.pipeline import run_export
    from equitune.train.checkpoint import checkpoints
    from equitune.train.pipeline import output_dir, run_training

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    config = _config(recipe, work, precision, points)
    generate_dataset(config)
    started = time.perf_counter()
    result = run_training(config, progress=False)
    wall = time.perf_counter() - started
    run_dir = output_dir(config)
    elapsed = _metrics(run_dir)
    report = json.loads((run_dir / "training_report.json").read_text(encoding="utf-8"))

    def score(name: str) -> dict[str, Any]:
        run = evaluate_models(config, [model_entry(config, name)], write=False, record=False, progress=False)
        return _scored(run, name)

    rows: list[dict[str, Any]] = []
    first: str | None = None
    for checkpoint in checkpoints(run_dir / "checkpoints"):
        step = int(checkpoint.name.rsplit("-", 1)[1])
        name = f"ttq-step-{step}"
        ckpt_run = config.paths.finetuned_models / name
        shutil.copytree(checkpoint / "adapter", ckpt_run / "adapter")
        shutil.copy(run_dir / "training_report.json", ckpt_run / "training_report.json")
        exported = run_export(config, run_name=name, model_name=f"ttq:step{step}", progress=False)
        first = first or exported.name_tag
        rows.append({"step": step, "minutes": round(elapsed[step] / 60, 2), **score(exported.name_tag)})
        shutil.rmtree(ckpt_run / "export", ignore_errors=True)  # the merged model and GGUF: scored, not kept
        print(f"  step {step}: {rows[-1]['minutes']:.1f} min, mean {rows[-1]['mean_score']:.1f}", flush=True)
    if first is not None:
        base = baseline_for(config, model_entry(config, first, "candidate"))
        rows.insert(0, {"step": 0, "minutes": 0.0, **score(base.name)})
    return {
        "recipe": str(recipe),
        "precision": report.get("precision", precision),
        "families": list(config.evaluation.families),
        "max_steps": config.training.max_steps,
        "training_wall_s": round(wall, 1),
        "val_loss_before": result.val_loss_before,
        "best_val_loss": result.best_val_loss,
        "points": rows,
    }


def svg(curves: list[dict[str, Any]]) -> str:
    """Mean held-out score against minutes of training, one polyline per curve, the tier thresholds dashed."""
    width, height, left, right, top, bottom = 720, 420, 60, 200, 30, 50
    span = max((p["minutes"] for c in curves for p in c["points"]), default=1.0) or 1.0

    def x(minutes: float) -> float:
        return left + (width - left - right) * minutes / span

    def y(score: float) -> float:
        return top + (height - top - bottom) * (1 - score / 100)

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14">Held-out mean score against minutes of training</text>',
    ]
    for score in range(0, 101, 20):
        out.append(f'<line x1="{left}" y1="{y(score):.1f}" x2="{width - right}" y2="{y(score):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 8}" y="{y(score) + 4:.1f}" text-anchor="end">{score}</text>')
    for label, threshold in (("Good", GOOD), ("Excellent", EXCELLENT)):
        out.append(
            f'<line x1="{left}" y1="{y(threshold):.1f}" x2="{width - right}" y2="{y(threshold):.1f}" stroke="#999" '
            'stroke-dasharray="4 3"/>'
        )
        out.append(
            f'<text x="{width - right + 4}" y="{y(threshold) + 4:.1f}" fill="#666">{label} ({threshold:.0f})</text>'
        )
    ticks = 5
    for k in range(ticks + 1):
        minutes = span * k / ticks
        out.append(f'<text x="{x(minutes):.1f}" y="{height - bottom + 18}" text-anchor="middle">{minutes:.0f}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 12}" text-anchor="middle">minutes</text>')
    out.append(f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" stroke="#333"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y(0):.1f}" stroke="#333"/>')
    for i, curve in enumerate(curves):
        colour = colours[i % len(colours)]
        points = " ".join(f"{x(p['minutes']):.1f},{y(p['mean_score']):.1f}" for p in curve["points"])
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in curve["points"]:
            out.append(f'<circle cx="{x(p["minutes"]):.1f}" cy="{y(p["mean_score"]):.1f}" r="3" fill="{colour}"/>')
        name = f"{Path(curve['recipe']).stem}, {curve['precision']}"
        out.append(f'<text x="{width - right + 4}" y="{top + 16 * (i + 1) + 40}" fill="{colour}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def print_table(curves: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    families = sorted({f for c in curves for f in c["families"]})
    table = Table(title="Time to quality: held-out mean score against minutes of training")
    for column in ("recipe", "precision", "step", "minutes", "mean", "tier", *families, "halluc.", "cut"):
        table.add_column(column, justify="left" if column in ("recipe", "precision", "tier") else "right")
    for c in curves:
        for p in c["points"]:
            table.add_row(
                Path(c["recipe"]).stem,
                str(c["precision"]),
                str(p["step"]),
                f"{p['minutes']:.1f}",
                f"{p['mean_score']:.1f}",
                p["tier"],
                *(f"{p['families'][f]:.1f}" if f in p["families"] else "" for f in families),
                f"{p['hallucination_rate']:.1%}",
                f"{p['cut_at_limit']}/{p['outputs']}",
            )
    Console(width=160).print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, action="append", required=True, help="workflow config (repeatable)")
    parser.add_argument("--precision", action="append", choices=["auto", "int8", "bf16", "fp16", "fp32"])
    parser.add_argument("--points", type=int, default=4, help="checkpoints scored per run (default 4)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/equitune-ttq"))
    parser.add_argument("--json", type=Path, default=Path("time_to_quality.json"))
    parser.add_argument("--svg", type=Path, default=Path("time_to_quality.svg"))
    args = parser.parse_args()
    for recipe in args.recipe:
        if not recipe.is_file():
            parser.error(f"--recipe {recipe}: no such file")
    if args.points < 1:
        parser.error("--points must be at least 1")
    from equitune.io import atomic_write_json, atomic_write_text

    curves: list[dict[str, Any]] = []
    for recipe in args.recipe:
        for precision in args.precision or [None]:
            label = f"{recipe.stem}-{precision or 'recipe'}"
            print(f"{recipe} ({precision or 'its own precision'}): training and scoring", flush=True)
            curves.append(measure(recipe, precision, args.points, args.work / label))
            atomic_write_json(args.json, {"curves": curves})  # kept as it grows: a long run loses nothing
    atomic_write_text(args.svg, svg(curves))
    print_table(curves)
    print(f"wrote {args.json} and {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
