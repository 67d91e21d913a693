"""The training stage as one call: check the machine, resolve and load the base model, read the data,
run the LoRA loop, and leave everything in ``finetuned_models/<name>/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equitune.config import EquituneConfig, save_config
from equitune.errors import DataError, EquituneError
from equitune.io import atomic_write_json

if TYPE_CHECKING:
    from equitune.train.dataset import TokenizedDataset
    from equitune.train.distributed import World
    from equitune.train.loop import TrainResult

log = logging.getLogger("equitune.train")


def evenly_spaced(dataset: TokenizedDataset, limit: int | None) -> TokenizedDataset:
    """``dataset`` cut to ``limit`` examples spread evenly over it (the valid split is written company by company,
    so the first few would all be one company's); the whole of it when ``limit`` is None or not smaller."""
    total = len(dataset)
    if limit is None or limit >= total:
        return dataset
    keep = [dataset.examples[(i * total) // limit] for i in range(limit)]
    log.info("validation on %d of the %d valid examples (training.max_eval_examples)", limit, total)
    return dataclasses.replace(dataset, examples=keep)


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
    when given. ``use_qlora`` with ``four_bit`` loads the base in 4 bits (CUDA). ``world`` makes this one rank
    of a data-parallel run (see ``train/distributed.py``; rank 0 writes the files). Returns the ``TrainResult``.

    The backend (``training.backend``, see ``train/backends.py``) decides who loads and trains: transformers
    (plain or QLoRA, ``train/qlora.py``) and Unsloth (``train/unsloth_backend.py``) load a model that
    ``train/loop.py`` trains; mlx-lm trains in a subprocess (``train/mlx_backend.py``). All read the same
    configuration and leave the same files in ``finetuned_models/<name>/``."""
    from equitune.train.backends import check_qlora, detect_machine, select_backend
    from equitune.train.base_model import resolve_base_model
    from equitune.train.distributed import SINGLE

    world = world or SINGLE

    machine = detect_machine()
    check_qlora(use_qlora, four_bit, machine)
    backend = select_backend(config.training.backend, machine)
    qlora = use_qlora and four_bit  # check_qlora: both or neither
    if world.size > 1 and backend != "transformers":
        raise EquituneError(
            f"Data-parallel training (--distributed) runs on the transformers backend only, not {backend}; "
            "set training.backend to 'transformers' or train in one process."
        )
    if backend == "unsloth":
        import unsloth  # noqa: F401  # before transformers and peft, which Unsloth patches when imported

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
    if resume and backend == "mlx":
        raise EquituneError(
            "The mlx backend cannot resume a killed run (mlx-lm keeps no optimiser state); train again, or "
            "continue from a finished adapter with --continue-training."
        )
    valid_file = data / "valid.jsonl"

    resolved = resolve_base_model(base_model or config.model_selection.base_model)
    log.info("base model %s (%s backend%s)", resolved.describe(), backend, ", QLoRA" if qlora else "")
    if backend == "mlx":
        from equitune.train.mlx_backend import train_mlx

        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.json")
        return train_mlx(config, resolved, train_file, valid_file, out, init_adapter=init_adapter, progress=progress)

    # -- the backends whose model the LoRA loop trains
    from equitune.train.dataset import load_dataset, prepare_tokenizer
    from equitune.train.loop import train

    loop_config = config.training
    stamp: dict[str, Any] = {"backend": backend}
    if backend == "unsloth":
        from equitune.train.unsloth_backend import load_unsloth, unsloth_training_config

        model, tokenizer, arguments = load_unsloth(resolved, config, four_bit=qlora, init_adapter=init_adapter)
        wrapped = init_adapter is None
        loop_config = unsloth_training_config(config.training, wrapped=wrapped)
        stamp["unsloth"] = arguments
    elif qlora:
        from equitune.train.qlora import load_qlora_model, materialise_gguf, qlora_training_config

        if resolved.is_gguf and world.size > 1:  # one rank writes the shared folder, the others then read it
            if world.is_main:
                materialise_gguf(resolved)
            world.wait()
        model, tokenizer = load_qlora_model(
            resolved, gradient_checkpointing=config.training.gradient_checkpointing, device=world.device
        )
        loop_config = qlora_training_config(config.training)
        stamp["quantization"] = "4-bit NF4 (bitsandbytes), double quantisation, bf16 compute"
    else:
        from equitune.train.base_model import load_base_model

        model, tokenizer = load_base_model(resolved)
        if world.device is not None:
            import torch

            torch.nn.Module.to(model, world.device)  # in place; this rank's GPU in a data-parallel run
    if loop_config is not config.training:
        changed = {k: v for k, v in loop_config.model_dump().items() if v != getattr(config.training, k)}
        log.info("the %s backend trains with %s", backend, ", ".join(f"{k}={v}" for k, v in changed.items()))
        stamp["loop_settings"] = changed
    note = prepare_tokenizer(tokenizer)
    if note:
        log.info("%s", note)
    train_set = load_dataset(train_file, tokenizer, config.training.max_seq_length)
    valid_set = None
    if valid_file.is_file() and valid_file.read_text(encoding="utf-8").strip():
        valid_set = load_dataset(valid_file, tokenizer, config.training.max_seq_length)
    else:
        log.warning("%s is missing or empty: no validation loss, no early stopping, last adapter kept", valid_file)
    if valid_set is not None:
        valid_set = evenly_spaced(valid_set, config.training.max_eval_examples)
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
    result = train(
        model,
        tokenizer,
        train_set,
        valid_set,
        loop_config,
        config.lora_config,
        out,
        resume=resume,
        init_adapter=init_adapter,
        progress=progress,
        base_model=resolved.name,
        keep_checkpoints=config.training.keep_checkpoints,
        world=world,
    )
    if world.is_main:
        report = json.loads(result.report_path.read_text(encoding="utf-8"))
        atomic_write_json(result.report_path, {"backend": backend, **report, **stamp})
    return result
