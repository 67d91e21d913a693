"""A small training setup shared by the backend tests: a tiny base folder, data, a fast configuration, and the
machines ``detect_machine`` is made to report (imported as ``run_setup``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tiny

from equitune.config import EquituneConfig
from equitune.train.backends import Machine

CPU = Machine("cpu", has_unsloth=False, has_mlx=False, has_bitsandbytes=False)
CUDA = Machine("cuda", has_unsloth=True, has_mlx=False, has_bitsandbytes=True)
APPLE = Machine("apple", has_unsloth=False, has_mlx=True, has_bitsandbytes=False)


def make_setup(root: Path) -> tuple[Path, Path]:
    """The tiny base model folder and a data folder (6 training, 2 validation examples) under ``root``."""
    base = tiny.save_tiny(root / "base")
    data = root / "td"
    data.mkdir()
    tiny.write_jsonl(data / "train.jsonl", tiny.EXAMPLES)
    tiny.write_jsonl(data / "valid.jsonl", tiny.EXAMPLES[:2])
    return base, data


def make_config(root: Path, backend: str, **training: Any) -> EquituneConfig:
    """A configuration that trains the tiny model in a few steps, writing under ``root/finetuned_models``."""
    settings = {
        "batch_size": 2,
        "gradient_accumulation_steps": 1,
        "warmup_steps": 0,
        "eval_steps": 2,
        "save_steps": 2,
        "logging_steps": 1,
        "learning_rate": 0.01,
        "max_seq_length": 128,
        "precision": "fp32",
        "max_steps": 4,
        "backend": backend,
        **training,
    }
    return EquituneConfig.model_validate(
        {
            "training": settings,
            "paths": {"finetuned_models": str(root / "finetuned_models"), "training_data": str(root / "td")},
        }
    )
