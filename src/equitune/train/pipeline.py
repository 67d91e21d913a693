"""The training stage as one call: check the machine, resolve and load the base model, read the data,
run the LoRA loop, and leave everything in ``finetuned_models/<name>/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from equitune.config import EquituneConfig, save_config
from equitune.errors import DataError, EquituneError

if TYPE_CHECKING:
    from equitune.train.distributed import World
    from equitune.train.loop import TrainResult

log = logging.getLogger("equitune.train")


def output_dir(config: EquituneConfig, name: str | None = None) -> Path:
    """Where a run named ``name`` (default ``training.output_name``) writes."""
    return config.paths.finetuned_models / (name or config.training.output_name)


def run_training(
    config: EquituneConfig,
    *,
    base_model: str | None = None,
    data_dir: Path | None = None,
    name: str | None = None,
    resume: bool = False,
    continue_training: bool = False,
    new_data: Path | None = None,
    use_qlora: bool = False,
    four_bit: bool = False,
    progress: bool = True,
    world: World | None = None,
) -> TrainResult:
    """Fine-tune ``base_model`` (default ``model_selection.base_model``) on ``data_dir``'s train.jsonl
    (default ``paths.training_data``), evaluating on its valid.jsonl. ``resume`` continues a killed run from
    its latest checkpoint; ``continue_training`` starts from the run's finished adapter, on ``new_data``
    when given. ``world`` makes this one rank of a data-parallel run (see ``train/distributed.py``; rank 0
    writes the files). Returns the loop's ``TrainResult``."""
    from equitune.train.backends import check_qlora, detect_machine, select_backend
    from equitune.train.base_model import load_base_model, resolve_base_model
    from equitune.train.dataset import load_dataset, prepare_tokenizer
    from equitune.train.distributed import SINGLE
    from equitune.train.loop import train

    world = world or SINGLE

    machine = detect_machine()
    check_qlora(use_qlora, four_bit, machine)
    backend = select_backend(config.training.backend, machine)
    if backend != "transformers":
        raise EquituneError(
            f"The {backend} backend is selected for this machine, but equitune {_version()} trains with the "
            "transformers backend only; set training.backend to 'transformers'."
        )

    out = output_dir(config, name)
    data = data_dir or config.paths.training_data
    train_file = new_data if new_data is not None else data / "train.jsonl"
    if new_data is not None and not continue_training:
        raise EquituneError("--new-data needs --continue-training (it continues from a finished adapter).")
    if not train_file.is_file():
        raise DataError(f"{train_file}: no training data; run `equitune data generate` first")
    init_adapter = None
    if continue_training:
        init_adapter = out / "adapter"
        if not (init_adapter / "adapter_config.json").is_file():
            raise EquituneError(f"--continue-training needs a finished adapter at {init_adapter}; train once first.")
        if resume:
            raise EquituneError("Use either --resume (continue a killed run) or --continue-training, not both.")
        # The finished run stays as it is; the continued one is a new version beside it.
        version = 2
        while (out.parent / f"{out.name}-v{version}").exists():
            version += 1
        out = out.parent / f"{out.name}-v{version}"
        log.info("continuing from %s into %s", init_adapter, out)

    resolved = resolve_base_model(base_model or config.model_selection.base_model)
    log.info("base model %s", resolved.describe())
    model, tokenizer = load_base_model(resolved)
    if world.device is not None:
        import torch

        torch.nn.Module.to(model, world.device)  # in place; this rank's GPU in a data-parallel run
    note = prepare_tokenizer(tokenizer)
    if note:
        log.info("%s", note)
    train_set = load_dataset(train_file, tokenizer, config.training.max_seq_length)
    valid_file = data / "valid.jsonl"
    valid_set = None
    if valid_file.is_file() and valid_file.read_text(encoding="utf-8").strip():
        valid_set = load_dataset(valid_file, tokenizer, config.training.max_seq_length)
    else:
        log.warning("%s is missing or empty: no validation loss, no early stopping, last adapter kept", valid_file)
    for split, dataset in (("train", train_set), ("valid", valid_set)):
        if dataset is not None and dataset.truncation.examples_truncated:
            t = dataset.truncation
            log.warning(
                "%s: %d examples truncated to %d tokens (%d assistant tokens lost, %d examples dropped)",
                split,
                t.examples_truncated,
                t.max_seq_length,
                t.assistant_tokens_lost,
                t.examples_dropped,
            )

    world.wait()  # every rank has chosen `out` (a new -vN folder) before rank 0 creates it
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.json")
    return train(
        model,
        tokenizer,
        train_set,
        valid_set,
        config.training,
        config.lora_config,
        out,
        resume=resume,
        init_adapter=init_adapter,
        progress=progress,
        base_model=resolved.name,
        world=world,
    )


def _version() -> str:
    from equitune import __version__

    return __version__
