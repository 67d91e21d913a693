"""Resumable training checkpoints, written atomically: ``checkpoints/step-N/`` appears whole or not at all.

A checkpoint holds the adapter weights (PEFT ``save_pretrained``, safetensors), the optimizer, scheduler and
grad-scaler states, the torch/python/numpy RNG states, the data position (epoch, next batch index), the best
validation loss, the patience counter, the metrics so far, and a copy of the best adapter at that moment (so a
resumed run never keeps a "best" adapter from steps that were lost). Everything is written into a temporary
folder that is renamed into place last.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from equitune.errors import EquituneError
from equitune.io import atomic_write_json

log = logging.getLogger(__name__)

PREFIX = "step-"
STATE_FILE = "trainer_state.json"
TENSORS_FILE = "training_state.pt"
ADAPTER_SUBDIR = "adapter"
BEST_SUBDIR = "best_adapter"


@dataclass
class TrainState:
    """Everything about a run's progress that is not a tensor (saved as JSON in each checkpoint)."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0  # next batch of ``epoch`` to train on
    tokens: int = 0  # non-padding input tokens trained on
    label_tokens: int = 0  # tokens that carried loss
    train_time_s: float = 0.0  # time in training steps (no evaluation, no saving)
    elapsed_s: float = 0.0  # wall time of the run, over every resume
    best_val_loss: float | None = None
    best_step: int | None = None
    patience: int = 0
    stopped_early: bool = False
    val_loss_before: float | None = None
    last_val_loss: float | None = None
    last_eval_step: int | None = None
    train_loss_first: float | None = None
    train_loss_last: float | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), python and numpy global RNG states."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing an existing one (renames only)."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)


def checkpoints(root: Path) -> list[Path]:
    """The complete checkpoints under ``root``, oldest first (temporary folders are ignored)."""
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit() and (p / STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    found = checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(
    root: Path,
    state: TrainState,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any | None,
    best_adapter: Path | None,
    keep: int = 2,
) -> Path:
    """Write ``root/step-N/`` atomically and keep only the newest ``keep`` checkpoints."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{PREFIX}{state.step}"
    tmp = root / f".{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        model.save_pretrained(tmp / ADAPTER_SUBDIR, safe_serialization=True)
        tensors = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
        }
        torch.save(tensors, tmp / TENSORS_FILE)
        if best_adapter is not None and best_adapter.is_dir():
            shutil.copytree(best_adapter, tmp / BEST_SUBDIR)
        # The state file is written last: a folder without it is never taken for a checkpoint.
        atomic_write_json(tmp / STATE_FILE, state.to_json())
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for stale in checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    log.debug("checkpoint written: %s", target)
    return target


def load_checkpoint(
    path: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any | None,
    best_adapter: Path | None,
) -> TrainState:
    """Restore a checkpoint into the (already LoRA-wrapped) model, optimizer, scheduler, scaler and RNGs, and
    put back the best adapter as it was then (``best_adapter=None``: leave the files alone, as the ranks of a
    data-parallel run other than rank 0 do). Returns the saved ``TrainState``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = path / ADAPTER_SUBDIR / "adapter_model.safetensors"
    if not weights.is_file():
        raise EquituneError(f"{path}: checkpoint has no adapter weights ({weights.name})")
    result = set_peft_model_state_dict(model, load_file(weights))
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise EquituneError(f"{path}: adapter weights do not fit this model (unexpected keys {unexpected[:3]})")
    tensors = torch.load(path / TENSORS_FILE, map_location="cpu", weights_only=False)  # our own file
    optimizer.load_state_dict(tensors["optimizer"])
    scheduler.load_state_dict(tensors["scheduler"])
    if scaler is not None and tensors.get("scaler") is not None:
        scaler.load_state_dict(tensors["scaler"])
    set_rng_state(tensors["rng"])
    state = TrainState.from_json(json.loads((path / STATE_FILE).read_text(encoding="utf-8")))
    saved_best = path / BEST_SUBDIR
    if best_adapter is not None and saved_best.is_dir():
        tmp = best_adapter.with_name(f".{best_adapter.name}.restore-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(saved_best, tmp)
        replace_dir(tmp, best_adapter)
    elif best_adapter is not None and best_adapter.exists():
        shutil.rmtree(best_adapter)  # written after the checkpoint, by steps that are about to be redone
    log.info("resumed from %s (step %d, epoch %d, batch %d)", path, state.step, state.epoch, state.batch_index)
    return state
