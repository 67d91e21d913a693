"""The original design's four scripts, as thin argument parsers over equitune's functions.

Each keeps the original flags and calls the same functions as the ``equitune`` command: a script written against
the original interface runs the same stage, and an unknown flag is an error (exit 2) rather than ignored.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from equitune.config import EquituneConfig
from equitune.errors import EquituneError


def create_training_data_main(argv: Sequence[str] | None = None) -> int:
    """``python create_training_data.py``: generate the training set with the original design's defaults
    (500 examples over all six families) into ``training_data/``."""
    parser = argparse.ArgumentParser(prog="create_training_data.py", description=create_training_data_main.__doc__)
    parser.add_argument("--config", type=Path, help="config file (default ./finetune_config.json)")
    parser.add_argument("--num-examples", type=int, help="examples to generate (default data.num_examples, 500)")
    args = parser.parse_args(argv)
    config = _load_or_exit(args.config)
    if args.num_examples is not None:
        config = config.model_copy(update={"data": config.data.model_copy(update={"num_examples": args.num_examples})})
    from equitune.data.pipeline import generate_dataset
    from equitune.logging_setup import setup_logging

    setup_logging(config.paths.logs)
    try:
        summary = generate_dataset(config)
    except EquituneError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    counts = ", ".join(f"{name} {n}" for name, n in summary.counts.items())
    print(f"Wrote {summary.out_dir}: {counts}; ratings {summary.stats['ratings']}")
    return 0


def finetune_ollama_main(argv: Sequence[str] | None = None) -> int:
    """``python finetune_ollama.py``: LoRA fine-tuning and Ollama model creation."""
    parser = argparse.ArgumentParser(prog="finetune_ollama.py", description=finetune_ollama_main.__doc__)
    parser.add_argument("--config", type=Path, help="config file (default ./finetune_config.json)")
    parser.add_argument("--create-model", action="store_true", help="export and register the model with Ollama")
    parser.add_argument("--name", help="Ollama model name[:tag] (default equity_research_llama)")
    parser.add_argument("--use-qlora", action="store_true", help="QLoRA (4-bit base weights, CUDA)")
    parser.add_argument("--4bit", dest="four_bit", action="store_true", help="load the base model in 4 bits")
    parser.add_argument(
        "--distributed", action="store_true", help="data-parallel training (torchrun; nccl on CUDA, gloo on CPU)"
    )
    parser.add_argument(
        "--gpus", type=int, default=None, help="processes for --distributed: GPUs, or CPU processes without CUDA"
    )
    parser.add_argument("--continue-training", action="store_true", help="continue from a finished adapter")
    parser.add_argument("--new-data", type=Path, help="JSONL of new examples for --continue-training")
    args = parser.parse_args(argv)
    if args.gpus is not None and args.gpus < 1:
        parser.error("--gpus must be at least 1")
    if args.gpus is not None and not args.distributed:
        parser.error("--gpus needs --distributed")
    if args.new_data and not args.continue_training:
        parser.error("--new-data needs --continue-training")
    config = _load_or_exit(args.config)
    from equitune.logging_setup import setup_logging
    from equitune.train.distributed import launch_training
    from equitune.train.pipeline import output_dir, run_training

    setup_logging(config.paths.logs)
    if args.create_model and (output_dir(config) / "adapter" / "adapter_config.json").is_file():
        # the original design's second call: the run is trained, export it and create the Ollama model
        return _create_model(config, args.name)
    options = {
        "name": None if args.create_model else args.name,
        "continue_training": args.continue_training,
        "new_data": args.new_data,
        "use_qlora": args.use_qlora,
        "four_bit": args.four_bit,
    }
    try:
        result = launch_training(config, args.gpus, **options) if args.distributed else run_training(config, **options)
    except EquituneError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    print(f"Trained {result.steps} steps; adapter in {result.adapter_dir}")
    if args.create_model:
        return _create_model(config, args.name)
    return 0


def _create_model(config: EquituneConfig, name: str | None) -> int:
    """Export the trained run and register it with Ollama as ``name`` (default export.model_name:vN); without a
    reachable Ollama the files are kept and the ``ollama create`` command to run later is printed (exit 0)."""
    from equitune.export.pipeline import run_export

    try:
        result = run_export(config, model_name=name, create=True)
    except EquituneError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    print(f"Exported {result.name_tag}: {', '.join(p.name for p in result.gguf_files)}; Modelfile {result.modelfile}")
    if result.created:
        print(f"Created {result.name_tag} in Ollama at {result.host}")
    elif result.instructions:
        print(f"Ollama is not reachable at {result.host}; to create the model later run:\n  {result.instructions}")
    return 0


def evaluate_model_main(argv: Sequence[str] | None = None) -> int:
    """``python evaluate_model.py MODEL...``: score models on held-out equity-research prompts."""
    parser = argparse.ArgumentParser(prog="evaluate_model.py", description=evaluate_model_main.__doc__)
    parser.add_argument("models", nargs="+", help="model names (registry name[:tag], Ollama names, .gguf files)")
    parser.add_argument("--benchmark", action="store_true", help="compare the fine-tuned model with its base")
    parser.add_argument("--compare", action="store_true", help="table of all the given models")
    parser.add_argument("--baseline", help="baseline of --benchmark (default: the model's own base)")
    parser.add_argument("--prompts", type=Path, help="prompt file (JSONL or text) instead of the held-out set")
    parser.add_argument("--samples", type=int, help="sampled answers per prompt (default 1, greedy)")
    parser.add_argument("--judge", help="also score the answers with this model as a judge")
    parser.add_argument("--closed-book", action="store_true", help="held-out prompts without their DATA block")
    parser.add_argument("--run", help="name of the results folder under evaluation_results/")
    parser.add_argument("--config", type=Path, help="config file (default ./finetune_config.json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    from equitune.cli import main

    forwarded = ["evaluate", *args.models]
    switches = {
        "--benchmark": args.benchmark,
        "--compare": args.compare,
        "--closed-book": args.closed_book,
        "--no-progress": args.no_progress,
    }
    forwarded += [flag for flag, on in switches.items() if on]
    for flag, value in (
        ("--baseline", args.baseline),
        ("--prompts", args.prompts),
        ("--samples", args.samples),
        ("--judge", args.judge),
        ("--run", args.run),
        ("--config", args.config),
    ):
        if value is not None:
            forwarded += [flag, str(value)]
    return main(forwarded)


def run_complete_finetuning_main(argv: Sequence[str] | None = None) -> int:
    """``python run_complete_finetuning.py``: the whole workflow (``equitune run``); ``--validate-only`` checks the
    set-up and prints a checklist."""
    from equitune.pipeline import workflow_main

    return workflow_main(argv)


def _load_or_exit(path: Path | None) -> EquituneConfig:
    from equitune.config import load_config

    try:
        return load_config(path)
    except EquituneError as exc:
        sys.stderr.write(f"Configuration error: {exc}\n")
        raise SystemExit(1) from None
