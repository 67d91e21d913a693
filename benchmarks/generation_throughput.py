"""Batched generation in the embedded llama.cpp runtime: throughput and exactness by batch size.

For each model (the embedded SmolLM2 GGUF, and the quick-start's merged f16 GGUF when it exists) the same held-out
prompts (the test split, every evaluation family, interleaved) are answered with the evaluation's greedy options:

* batch size 1 is the one-at-a-time path, ``LlamaCppRuntime.chat`` per prompt, which every earlier release used;
* batch sizes 2, 4, 8, 16 go through ``chat_many`` (``equitune.serve.batched``): continuous batching, a KV stream per
  sequence, the shared prompt prefix evaluated once.

Each batch size runs in a fresh process, so its peak RSS is its own. The table gives the aggregate tokens/s
(completion tokens / wall-clock seconds), the mean tokens/s each sequence saw, the mean time from a request taking
its slot to its first token, peak RSS, and how many answers are token-for-token identical to batch size 1 (with the
first differing token of the others).

Target (issue 16): at the best batch size at least 4x the aggregate tokens/s of batch size 1, identical greedy text.

Usage: ``python benchmarks/generation_throughput.py [--model PATH ...] [--prompts 16] [--batch-sizes 1,2,4,8,16]
[--max-tokens N] [--json evaluation_results/generation_throughput.json]``; exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET_SPEEDUP = 4.0
ROOT = Path(__file__).resolve().parent.parent
QUICKSTART_GGUF = "finetuned_models/equity_research_smollm2/export/v1/equity_research_smollm2-f16.gguf"


def _prompts(count: int) -> list[Any]:
    from equitune.config import EquituneConfig
    from equitune.evaluate.prompts import default_prompts

    config = EquituneConfig()
    return default_prompts(config, max_prompts=count)


def worker(model: str, batch_size: int, count: int, max_tokens: int | None) -> dict[str, Any]:
    """One model at one batch size, in this process: the answers' tokens, texts and timings."""
    from equitune.config import EquituneConfig
    from equitune.evaluate.benchmark import generation_options
    from equitune.serve.llamacpp_runtime import LlamaCppRuntime
    from equitune.serve.runtime import Message

    config = EquituneConfig()
    if max_tokens is not None:
        config.evaluation.max_tokens = max_tokens
    options = generation_options(config, 0, 1)
    prompts = _prompts(count)
    conversations = [([Message("system", p.system)] if p.system else []) + [Message("user", p.prompt)] for p in prompts]
    runtime = LlamaCppRuntime(model, n_ctx=config.evaluation.n_ctx)
    began = time.perf_counter()
    if batch_size == 1:
        generations = []
        for messages in conversations:
            generations.append(runtime.chat(messages, options))
        ttft = [g.prompt_seconds for g in generations]
    else:
        generations = runtime.chat_many(conversations, options, batch_size=batch_size)
        ttft = [g.prompt_seconds for g in generations]
    wall = time.perf_counter() - began
    tokens = [runtime.tokenize(g.text) for g in generations]
    runtime.close()
    completion = sum(g.completion_tokens for g in generations)
    return {
        "model": model,
        "batch_size": batch_size,
        "prompts": len(prompts),
        "prompt_tokens": sum(g.prompt_tokens for g in generations),
        "completion_tokens": completion,
        "truncated": sum(g.finish_reason == "length" for g in generations),
        "wall_seconds": round(wall, 3),
        "aggregate_tokens_per_s": round(completion / wall, 2) if wall > 0 else None,
        "per_sequence_tokens_per_s": round(
            statistics.fmean(g.completion_tokens / g.completion_seconds for g in generations if g.completion_seconds),
            2,
        ),
        "mean_time_to_first_token_s": round(statistics.fmean(ttft), 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "texts": [g.text for g in generations],
        "tokens": tokens,
    }


def _first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _run(model: str, batch_size: int, count: int, max_tokens: int | None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", model, str(batch_size), str(count), str(max_tokens or 0)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{Path(model).name} at batch size {batch_size} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="GGUF to measure (repeatable)")
    parser.add_argument("--prompts", type=int, default=16, help="held-out prompts per run (default 16)")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=None, help="default: evaluation.max_tokens")
    parser.add_argument(
        "--json", type=Path, default=Path("evaluation_results/generation_throughput.json"), help="results file"
    )
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        model, size, count, limit = args.worker
        print(json.dumps(worker(model, int(size), int(count), int(limit) or None)))
        return 0

    from rich.console import Console
    from rich.table import Table

    from equitune.io import atomic_write_json
    from equitune.llamacpp import cpu_model
    from equitune.train.base_model import embedded_gguf_path

    models = args.model or [str(embedded_gguf_path())]
    if not args.model and (ROOT / QUICKSTART_GGUF).is_file():
        models.append(str(ROOT / QUICKSTART_GGUF))
    sizes = sorted({int(s) for s in args.batch_sizes.split(",")} | {1})
    console = Console()
    summary: dict[str, Any] = {"cpu": cpu_model(), "prompts": args.prompts, "models": []}
    ok = True
    for model in models:
        runs = [_run(model, size, args.prompts, args.max_tokens) for size in sizes]
        reference = runs[0]
        table = Table(title=f"{Path(model).name}: {reference['prompts']} held-out prompts, greedy")
        for column in (
            "batch",
            "aggregate tok/s",
            "speed-up",
            "per-seq tok/s",
            "time to 1st token",
            "wall",
            "peak RSS",
            "same text as batch 1",
        ):
            table.add_column(column, justify="right")
        rows = []
        for run in runs:
            differ = [
                d
                for a, b in zip(reference["tokens"], run["tokens"], strict=True)
                if (d := _first_difference(a, b)) is not None
            ]
            same = run["prompts"] - len(differ)
            speedup = run["aggregate_tokens_per_s"] / reference["aggregate_tokens_per_s"]
            where = f" (first differing token: {', '.join(map(str, sorted(differ)))})" if differ else ""
            table.add_row(
                str(run["batch_size"]),
                f"{run['aggregate_tokens_per_s']:.1f}",
                f"{speedup:.2f}x",
                f"{run['per_sequence_tokens_per_s']:.1f}",
                f"{run['mean_time_to_first_token_s']:.2f} s",
                f"{run['wall_seconds']:.1f} s",
                f"{run['peak_rss_mib']:.0f} MiB",
                f"{same}/{run['prompts']}{where}",
            )
            rows.append(
                {
                    **{k: v for k, v in run.items() if k not in ("texts", "tokens")},
                    "speedup": round(speedup, 2),
                    "identical_to_batch_1": same,
                    "first_differing_tokens": sorted(differ),
                }
            )
        console.print(table)
        best = max(rows, key=lambda r: r["aggregate_tokens_per_s"])
        exact = all(r["identical_to_batch_1"] == r["prompts"] for r in rows)
        met = best["speedup"] >= TARGET_SPEEDUP and exact
        ok = ok and met
        console.print(
            f"best batch size {best['batch_size']}: {best['speedup']:.2f}x batch 1 (target {TARGET_SPEEDUP:.0f}x), "
            f"identical greedy text at every size: {'yes' if exact else 'no'} -> {'PASS' if met else 'FAIL'}"
        )
        summary["models"].append({"model": model, "runs": rows, "best_batch_size": best["batch_size"], "met": met})
    atomic_write_json(args.json, summary)
    console.print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
