"""Trainer backends: which one runs here, and how equitune's config translates to Unsloth and mlx-lm.

All backends read the same ``TrainingConfig``/``LoraConfig`` and write the same output layout. The
translation functions are pure, so they are tested on any machine; the backends themselves need their
hardware (CUDA for Unsloth and QLoRA, Apple Silicon for MLX).
"""

from __future__ import annotations

import importlib.util
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from equitune.config import LoraConfig, TrainingConfig
from equitune.errors import EquituneError

Platform = Literal["cuda", "apple", "cpu"]
BACKENDS = ("transformers", "unsloth", "mlx")


@dataclass(frozen=True)
class Machine:
    """What the training machine offers: accelerator kind and which optional packages are installed."""

    platform: Platform
    has_unsloth: bool
    has_mlx: bool
    has_bitsandbytes: bool


def detect_machine() -> Machine:
    """Inspect this machine (imports torch only to ask about CUDA)."""
    import torch

    if torch.cuda.is_available():
        kind: Platform = "cuda"
    elif platform.system() == "Darwin" and platform.machine() == "arm64":
        kind = "apple"
    else:
        kind = "cpu"
    return Machine(
        platform=kind,
        has_unsloth=importlib.util.find_spec("unsloth") is not None,
        has_mlx=importlib.util.find_spec("mlx_lm") is not None,
        has_bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
    )


def select_backend(requested: str, machine: Machine) -> str:
    """The backend to run: ``requested`` when it can run here, or for ``auto`` unsloth on CUDA when
    installed, mlx on Apple Silicon when installed, else transformers. Impossible requests are errors
    naming what would work."""
    if requested == "auto":
        if machine.platform == "cuda" and machine.has_unsloth:
            return "unsloth"
        if machine.platform == "apple" and machine.has_mlx:
            return "mlx"
        return "transformers"
    if requested == "unsloth":
        if machine.platform != "cuda":
            raise EquituneError(
                f"The unsloth backend needs a CUDA GPU; this machine has {machine.platform}. "
                "Use backend 'transformers' (CPU or CUDA) or 'mlx' (Apple Silicon)."
            )
        if not machine.has_unsloth:
            raise EquituneError("The unsloth backend is not installed: pip install 'equitune[cuda]'.")
    if requested == "mlx":
        if machine.platform != "apple":
            raise EquituneError(
                f"The mlx backend needs Apple Silicon; this machine has {machine.platform}. "
                "Use backend 'transformers' (CPU or CUDA) or 'unsloth' (CUDA)."
            )
        if not machine.has_mlx:
            raise EquituneError("The mlx backend is not installed: pip install 'equitune[mlx]'.")
    if requested not in BACKENDS:
        raise EquituneError(f"Unknown backend '{requested}'. Valid: auto, {', '.join(BACKENDS)}.")
    return requested


def check_qlora(use_qlora: bool, four_bit: bool, machine: Machine) -> None:
    """QLoRA (``--use-qlora --4bit``) loads the base in 4 bits through bitsandbytes, which needs CUDA."""
    if not (use_qlora or four_bit):
        return
    if use_qlora != four_bit:
        raise EquituneError("QLoRA is --use-qlora together with --4bit (the base model loaded in 4 bits).")
    if machine.platform != "cuda":
        raise EquituneError(
            f"QLoRA (--use-qlora --4bit) needs a CUDA GPU with bitsandbytes; this machine has {machine.platform}. "
            "Alternatives: plain LoRA (drop the flags; the default, fine on CPU for small models), the mlx "
            "backend on Apple Silicon (which trains 4-bit MLX models), or a smaller base model."
        )
    if not machine.has_bitsandbytes:
        raise EquituneError("QLoRA needs bitsandbytes: pip install 'equitune[cuda]'.")


def optimizer_steps(num_examples: int, config: TrainingConfig, world_size: int = 1) -> int:
    """Optimiser steps a run takes: ``max_steps`` or epochs × ceil(examples / global batch)."""
    if config.max_steps is not None:
        return config.max_steps
    global_batch = config.batch_size * config.gradient_accumulation_steps * world_size
    return max(1, math.ceil(num_examples / global_batch * config.num_epochs))


def mlx_lora_config(
    config: TrainingConfig,
    lora: LoraConfig,
    model: str,
    data_dir: Path,
    adapter_dir: Path,
    num_examples: int,
    resume_adapter_file: Path | None = None,
) -> dict[str, Any]:
    """The mlx-lm ``lora`` YAML config equivalent to equitune's settings (``mlx_lm.lora --config``).

    mlx-lm scales the LoRA update by ``scale`` directly, where PEFT uses ``alpha / rank``; its batch has no
    accumulation, so the global batch is carried as ``batch_size * gradient_accumulation_steps``. The loss is on
    the assistant turn only (``mask_prompt``), as in the transformers backend; ``test`` evaluates the final
    adapter on ``data_dir/test.jsonl``, which the mlx backend fills with the validation set. mlx-lm has no
    gradient clipping and no early stopping, so ``max_grad_norm`` and ``early_stopping_patience`` do not apply.
    ``resume_adapter_file`` starts from the weights of an mlx-lm adapter file instead of new adapters."""
    steps = optimizer_steps(num_examples, config)
    schedule: dict[str, Any] | None = None
    if config.lr_scheduler == "cosine":
        schedule = {
            "name": "cosine_decay",
            "warmup": config.warmup_steps,
            "warmup_init": 0.0,
            "arguments": [config.learning_rate, max(1, steps - config.warmup_steps), 0.0],
        }
    elif config.lr_scheduler == "linear":
        schedule = {
            "name": "linear_schedule",
            "warmup": config.warmup_steps,
            "warmup_init": 0.0,
            "arguments": [config.learning_rate, 0.0, max(1, steps - config.warmup_steps)],
        }
    result: dict[str, Any] = {
        "model": model,
        "train": True,
        "fine_tune_type": "lora",
        "optimizer": "adamw",
        "optimizer_config": {"adamw": {"weight_decay": config.weight_decay}},  # mlx's AdamW default is 0.01
        "mask_prompt": True,
        "data": str(data_dir),
        "seed": config.seed,
        "num_layers": -1,
        "batch_size": config.batch_size * config.gradient_accumulation_steps,
        "iters": steps,
        "val_batches": -1,
        "learning_rate": config.learning_rate,
        "steps_per_report": config.logging_steps,
        "steps_per_eval": config.eval_steps,
        "adapter_path": str(adapter_dir),
        "save_every": config.save_steps,
        "max_seq_length": config.max_seq_length,
        "grad_checkpoint": config.gradient_checkpointing,
        "test": True,
        "test_batches": -1,
        "lora_parameters": {
            "keys": [
                f"self_attn.{m}" if m in {"q_proj", "k_proj", "v_proj", "o_proj"} else f"mlp.{m}"
                for m in lora.target_modules
            ],
            "rank": lora.rank,
            "scale": lora.alpha / lora.rank,
            "dropout": lora.dropout,
        },
    }
    if schedule is not None:
        result["lr_schedule"] = schedule
    if resume_adapter_file is not None:
        result["resume_adapter_file"] = str(resume_adapter_file)
    return result


def unsloth_arguments(
    config: TrainingConfig, lora: LoraConfig, model: str, four_bit: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments for ``FastLanguageModel.from_pretrained`` and ``FastLanguageModel.get_peft_model``."""
    load = {"model_name": model, "max_seq_length": config.max_seq_length, "dtype": None, "load_in_4bit": four_bit}
    peft = {
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": list(lora.target_modules),
        "bias": "none",
        "use_gradient_checkpointing": "unsloth" if config.gradient_checkpointing else False,
        "random_state": config.seed,
    }
    return load, peft
