"""LoRA training throughput: equitune's trainer against a plain Hugging Face ``Trainer`` + PEFT, in fp32 and bf16.

Same base model (the embedded SmolLM2-135M-Instruct), same data (512-token windows of equitune's training
set: some prompt context, then the analyst's response, loss on the response tokens), same LoRA settings, same
global batch (4 × 512 tokens), same constant learning rate, 20 optimiser steps. Each run is a separate
process. Tokens/s is over the optimiser steps themselves (step times from the batch in hand to the optimiser
update, measured the same way in both: equitune's step clock, one metrics line per step, and a
``TrainerCallback``'s ``on_step_begin``/``on_step_end``), so neither side's evaluation or saving counts. The
headline rate leaves out the first step of both sides (warm-up: first allocations, and in equitune the one-off
``torch.compile`` of the decoder layers); the first step's time and the rate over all steps are shown too.
Peak RSS is the training phase's: the high-water mark is reset (``/proc/self/clear_refs``) once the model is
loaded, so the model load, the same in both, does not mask the difference. Reports tokens/s, peak RSS and the validation
loss after the run (on the same held-out windows). The Trainer runs twice: in fp32, and with ``bf16=True``
(autocast to bfloat16 on the CPU), which on a CPU with native bf16 (AMX or AVX512-BF16) is the faster and fairer
baseline. Targets: >= 3.0× the fp32 baseline's tokens/s, and >= 2× the bf16 baseline's where the CPU has native
bf16 (elsewhere bf16 is emulated, slower than fp32, and shown without a target); no more peak memory than the fp32
baseline; validation loss within 3% of the fp32 baseline's.

The two sides run one after the other, so a shared machine that speeds up or slows down in between moves the
ratio (this 2-core machine's fp32 matmul rate was seen anywhere from 230 to 390 GFLOP/s within an hour). Each
side therefore runs ``--rounds`` times (default 2) in ABBA order (fp32 baseline, bf16 baseline, equitune, then
the reverse), which cancels a steady drift; the headline rates pool all rounds' steps (total tokens over total
seconds), and each round's own ratio is printed beside it.

Usage: ``python benchmarks/train_throughput.py [--steps 20] [--rounds 2] [--json results.json]`` (needs the ``train``
extra and a generated training set in ``training_data/``; ``equitune data generate`` makes one).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIDES = ("baseline", "baseline-bf16", "equitune")
SEQ = 512
BATCH = 4
LR = 3e-4
CONTEXT = 128  # prompt tokens kept before the response starts


def windows(path: Path, tokenizer: Any, limit: int) -> list[tuple[list[int], list[int]]]:
    """512-token windows: the last CONTEXT prompt tokens, then the response, labels on response tokens."""
    from equitune.train.dataset import IGNORE_INDEX, end_of_turn_id, read_records, tokenize_conversation

    out = []
    eot = end_of_turn_id(tokenizer)
    for line, messages in read_records(path):
        ids, labels = tokenize_conversation(tokenizer, messages, eot, line)
        first = next(i for i, t in enumerate(labels) if t != IGNORE_INDEX)
        start = max(0, first - CONTEXT)
        if len(ids) - start >= SEQ:
            out.append((ids[start : start + SEQ], labels[start : start + SEQ]))
        if len(out) == limit:
            break
    return out


def reset_peak_rss() -> None:
    """Reset this process's RSS high-water mark (Linux); the load phase's peak then no longer counts."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def load() -> tuple[Any, Any]:
    from equitune.train.base_model import load_base_model, resolve_base_model
    from equitune.train.dataset import prepare_tokenizer

    model, tokenizer = load_base_model(resolve_base_model("smollm2:135m"))
    prepare_tokenizer(tokenizer)
    return model, tokenizer


def run_equitune(data: Path, steps: int, out: Path) -> dict[str, Any]:
    from equitune.config import LoraConfig, TrainingConfig
    from equitune.train.dataset import TokenizedDataset, TokenizedExample, TruncationStats, end_of_turn_id
    from equitune.train.loop import train

    model, tokenizer = load()

    def dataset(rows: list[tuple[list[int], list[int]]]) -> TokenizedDataset:
        examples = [TokenizedExample(ids, labels, i + 1) for i, (ids, labels) in enumerate(rows)]
        return TokenizedDataset(examples, TruncationStats(SEQ), tokenizer.pad_token_id, end_of_turn_id(tokenizer))

    train_set = dataset(windows(data / "train.jsonl", tokenizer, steps * BATCH))
    valid_set = dataset(windows(data / "valid.jsonl", tokenizer, 8))
    config = TrainingConfig(
        batch_size=BATCH,
        gradient_accumulation_steps=1,
        max_steps=steps,
        warmup_steps=0,
        lr_scheduler="constant",
        learning_rate=LR,
        eval_steps=10_000,
        save_steps=10_000,
        max_seq_length=SEQ,
        precision="auto",
        logging_steps=1,
    )
    reset_peak_rss()
    result = train(model, tokenizer, train_set, valid_set, config, LoraConfig(), out, progress=False)
    return {
        **rates(_step_seconds(result.metrics_path)),
        "peak_rss_gb": peak_rss_gb(),
        "val_loss_after": result.val_loss_after,
        "precision": result.precision + (" + compile" if result.compiled else ""),
    }


def _step_seconds(metrics: Path) -> list[float]:
    """Each step's time from metrics.jsonl (one training line per step: cumulative tokens and that step's rate)."""
    lines = [json.loads(x) for x in metrics.read_text(encoding="utf-8").splitlines() if x.strip()]
    steps = [x for x in lines if "loss" in x]
    before = [0] + [x["tokens"] for x in steps[:-1]]
    return [(x["tokens"] - b) / x["tokens_per_s"] for x, b in zip(steps, before, strict=True)]


def _tokens_per_s(step_seconds: list[float]) -> float:
    return BATCH * SEQ * len(step_seconds) / sum(step_seconds)


def rates(step_seconds: list[float]) -> dict[str, Any]:
    """Tokens/s over the steps after the first (the headline), over all steps, and the first step's time."""
    return {
        "tokens_per_s": _tokens_per_s(step_seconds[1:] or step_seconds),
        "tokens_per_s_all_steps": _tokens_per_s(step_seconds),
        "first_step_seconds": step_seconds[0],
        "train_seconds": sum(step_seconds),
        "step_seconds": step_seconds,
    }


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX tiles or AVX512-BF16), as /proc/cpuinfo reports it."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "amx_bf16" in flags or "avx512_bf16" in flags


def run_baseline(data: Path, steps: int, out: Path, bf16: bool = False) -> dict[str, Any]:
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from equitune.config import LoraConfig

    model, tokenizer = load()
    lora = LoraConfig()
    model = get_peft_model(
        model,
        PeftLoraConfig(
            r=lora.rank,
            lora_alpha=int(lora.alpha),
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            task_type=TaskType.CAUSAL_LM,
        ),
    )

    class Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __init__(self, rows: list[tuple[list[int], list[int]]]) -> None:
            self.rows = rows

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            ids, labels = self.rows[i]
            return {
                "input_ids": torch.tensor(ids),
                "attention_mask": torch.ones(len(ids), dtype=torch.long),
                "labels": torch.tensor(labels),
            }

    timing = {"start": 0.0}
    step_seconds: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            timing["start"] = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            step_seconds.append(time.perf_counter() - timing["start"])

    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        gradient_accumulation_steps=1,
        max_steps=steps,
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=42,
        dataloader_num_workers=0,
        bf16=bf16,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Rows(windows(data / "train.jsonl", tokenizer, steps * BATCH)),
        eval_dataset=Rows(windows(data / "valid.jsonl", tokenizer, 8)),
        callbacks=[Clock()],
    )
    reset_peak_rss()
    trainer.train()
    peak = peak_rss_gb()
    return {
        **rates(step_seconds),
        "peak_rss_gb": peak,
        "val_loss_after": trainer.evaluate()["eval_loss"],
        "precision": "bf16 (autocast)" if bf16 else "fp32",
    }


def child(kind: str, data: Path, steps: int, out: Path) -> None:
    if kind == "equitune":
        result = run_equitune(data, steps, out)
    else:
        result = run_baseline(data, steps, out, bf16=kind == "baseline-bf16")
    print("RESULT " + json.dumps(result), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--data", type=Path, default=Path("training_data"))
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of each side, alternating ABBA so a drifting machine cancels"
    )
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/equitune-train-bench"))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.steps, args.out / f"{args.child}-{time.time_ns()}")
        return 0
    if not (args.data / "train.jsonl").is_file():
        raise SystemExit(f"{args.data}/train.jsonl not found: run `equitune data generate` first")
    rounds: list[dict[str, dict[str, Any]]] = []
    for number in range(args.rounds):
        order = SIDES if number % 2 == 0 else SIDES[::-1]  # ABBA: a steady drift cancels
        rounds.append({kind: run_child(kind, args) for kind in order})
    results = {kind: pooled([r[kind] for r in rounds]) for kind in SIDES}
    base, bf16, ours = results["baseline"], results["baseline-bf16"], results["equitune"]
    speedup = ours["tokens_per_s"] / base["tokens_per_s"]
    speedup_bf16 = ours["tokens_per_s"] / bf16["tokens_per_s"]
    native = native_bf16()
    loss_gap = abs(ours["val_loss_after"] / base["val_loss_after"] - 1)
    summary = {
        "steps": args.steps,
        "batch": BATCH,
        "seq_len": SEQ,
        "rounds": rounds,
        "round_speedups": [r["equitune"]["tokens_per_s"] / r["baseline"]["tokens_per_s"] for r in rounds],
        "round_speedups_bf16": [r["equitune"]["tokens_per_s"] / r["baseline-bf16"]["tokens_per_s"] for r in rounds],
        "results": results,
        "native_bf16": native,
        "speedup": speedup,
        "speedup_vs_bf16": speedup_bf16,
        "speedup_all_steps": ours["tokens_per_s_all_steps"] / base["tokens_per_s_all_steps"],
        "memory_ratio": ours["peak_rss_gb"] / base["peak_rss_gb"],
        "val_loss_gap": loss_gap,
        "passed": speedup >= 3.0
        and (speedup_bf16 >= 2.0 or not native)
        and ours["peak_rss_gb"] <= base["peak_rss_gb"]
        and loss_gap <= 0.03,
    }
    print_table(summary, args.steps)
    if args.json:
        from equitune.io import atomic_write_json

        atomic_write_json(args.json, summary)
    return 0 if summary["passed"] else 1


def run_child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One side's run in its own process."""
    command = [sys.executable, __file__, "--child", kind, "--steps", str(args.steps), "--data", str(args.data)]
    proc = subprocess.run([*command, "--out", str(args.out)], capture_output=True, text=True, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"the {kind} run failed")
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One side over all rounds: rates from the summed tokens and seconds, the highest peak RSS, the mean loss."""
    later = [x for r in runs for x in (r["step_seconds"][1:] or r["step_seconds"])]
    every = [x for r in runs for x in r["step_seconds"]]
    return {
        "tokens_per_s": _tokens_per_s(later),
        "tokens_per_s_all_steps": _tokens_per_s(every),
        "first_step_seconds": max(r["first_step_seconds"] for r in runs),
        "train_seconds": sum(every),
        "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
        "val_loss_after": sum(r["val_loss_after"] for r in runs) / len(runs),
        "precision": runs[0]["precision"],
    }


def print_table(summary: dict[str, Any], steps: int) -> None:
    from rich.console import Console
    from rich.table import Table

    rounds, results = summary["rounds"], summary["results"]
    title = f"LoRA training, SmolLM2-135M, {steps} steps of {BATCH} x {SEQ} tokens, {len(rounds)} round(s)"
    table = Table(title=title)
    columns = ("", "tokens/s", "first step s", "tokens/s all steps", "peak RSS GB", "val loss after", "precision")
    for column in columns:
        table.add_column(column, justify="right" if column else "left")
    labels = {
        "baseline": "HF Trainer + PEFT, fp32",
        "baseline-bf16": "HF Trainer + PEFT, bf16",
        "equitune": "equitune",
    }
    rows = [(f"{labels[k]}, round {i + 1}", r[k]) for i, r in enumerate(rounds) for k in r] if len(rounds) > 1 else []
    rows += [(labels[k] + (", all rounds" if len(rounds) > 1 else ""), results[k]) for k in SIDES]
    for label, r in rows:
        table.add_row(
            label,
            f"{r['tokens_per_s']:.0f}",
            f"{r['first_step_seconds']:.1f}",
            f"{r['tokens_per_s_all_steps']:.0f}",
            f"{r['peak_rss_gb']:.2f}",
            f"{r['val_loss_after']:.4f}",
            r["precision"],
        )
    per_round = ", ".join(f"{x:.2f}x" for x in summary["round_speedups"])
    bf16_target = "target >= 2x" if summary["native_bf16"] else "no target: this CPU has no native bf16"
    table.caption = (
        f"speed-up {summary['speedup']:.2f}x the fp32 baseline after the first step (rounds: {per_round}; target "
        f">= 3.0x; {summary['speedup_all_steps']:.2f}x over all steps), {summary['speedup_vs_bf16']:.2f}x the bf16 "
        f"baseline ({bf16_target}); memory {summary['memory_ratio']:.2f}x of the fp32 baseline "
        f"(target <= 1); loss gap {summary['val_loss_gap']:.1%} (target <= 3%): "
        f"{'PASS' if summary['passed'] else 'FAIL'}"
    )
    Console(width=130).print(table)


if __name__ == "__main__":
    sys.exit(main())
