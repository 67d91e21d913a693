"""The MLX backend (Apple Silicon): mlx-lm trains the LoRA adapters in a subprocess; equitune prepares its data
and config, reads its progress, and turns its adapter into the PEFT layout every other stage reads.

Run folder (the same files as the transformers backend, plus mlx-lm's own)::

    out_dir/mlx/data/{train,valid,test}.jsonl   the training data as mlx-lm reads it (test = valid: final loss)
    out_dir/mlx/lora_config.yaml                 ``mlx_lora_config`` (train/backends.py), given to ``--config``
    out_dir/mlx/adapters/                        mlx-lm's adapters.safetensors and adapter_config.json
    out_dir/adapter/                             the final adapter in PEFT layout + tokenizer
    out_dir/metrics.jsonl, loss_curve.png, training_report.json, train_config.json

mlx-lm's ``LoRALinear`` adds ``scale * (x @ lora_a) @ lora_b`` with ``lora_a`` (in, r) and ``lora_b`` (r, out);
PEFT adds ``(alpha / r) * x @ lora_A.T @ lora_B.T`` with ``lora_A`` (r, in) and ``lora_B`` (out, r). The
conversion transposes both and folds ``scale / (alpha / r)`` into ``lora_B``, so both give the same delta W.
mlx-lm keeps no optimiser state and only the last adapter, so a run cannot be resumed; a finished adapter can be
continued (``--continue-training``) by converting it back.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from equitune.config import EquituneConfig, LoraConfig
from equitune.errors import DataError, EquituneError
from equitune.io import atomic_write_json, atomic_write_text
from equitune.train.backends import mlx_lora_config
from equitune.train.base_model import ResolvedBase

if TYPE_CHECKING:
    from equitune.train.loop import TrainResult

log = logging.getLogger(__name__)

ADAPTER_FILE = "adapters.safetensors"
"""mlx-lm's adapter weights, in ``adapter_path``."""
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
"""What PEFT's ``LoraModel`` puts before the base model's module names in a saved adapter."""

Runner = Callable[[Sequence[str], Callable[[str], None]], None]
"""Runs a command, calling the second argument with every line it prints; raises ``EquituneError`` on failure."""


# ------------------------------------------------------------------------------------------- data and command


def write_mlx_data(train_file: Path, valid_file: Path | None, data_dir: Path) -> tuple[int, int]:
    """Write ``train.jsonl``, ``valid.jsonl`` and ``test.jsonl`` (a copy of valid) as ``{"messages": [...]}``
    records, the chat layout mlx-lm reads; the input may be in either equitune format (validated on read).
    Returns (train examples, valid examples). mlx-lm cannot train without validation data, so it is required."""
    from equitune.train.dataset import read_records

    if valid_file is None or not valid_file.is_file() or not valid_file.read_text(encoding="utf-8").strip():
        raise DataError(
            f"{valid_file}: the mlx backend needs validation data (mlx-lm trains only with a non-empty "
            "valid.jsonl); generate it with `equitune data generate` or use the transformers backend."
        )
    counts = []
    for split, source in (("train", train_file), ("valid", valid_file)):
        records = read_records(source)
        text = "".join(json.dumps({"messages": messages}, ensure_ascii=False) + "\n" for _, messages in records)
        atomic_write_text(data_dir / f"{split}.jsonl", text)
        if split == "valid":
            atomic_write_text(data_dir / "test.jsonl", text)
        counts.append(len(records))
    return counts[0], counts[1]


def check_mlx_batches(batch_size: int, num_train: int, num_valid: int) -> None:
    """mlx-lm makes only full batches and stops with an error when a split has fewer examples than one batch."""
    if num_train < batch_size or num_valid < batch_size:
        raise EquituneError(
            f"mlx-lm trains on batches of {batch_size} examples (training.batch_size x "
            f"gradient_accumulation_steps) and needs at least that many in train ({num_train}) and valid "
            f"({num_valid}); lower training.batch_size or training.gradient_accumulation_steps."
        )


def mlx_command(python: str, config_file: Path, package_cli: bool | None = None) -> list[str]:
    """The command that runs ``mlx_lm lora --config FILE``: ``python -m mlx_lm lora`` where mlx-lm has its
    package entry point (newer releases, where ``-m mlx_lm.lora`` is deprecated), else ``python -m mlx_lm.lora``.
    ``package_cli`` None looks at the installed mlx-lm (without importing it)."""
    if package_cli is None:
        spec = importlib.util.find_spec("mlx_lm")
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        package_cli = any((Path(folder) / "__main__.py").is_file() for folder in folders)
    module = ["-m", "mlx_lm", "lora"] if package_cli else ["-m", "mlx_lm.lora"]
    return [python, *module, "--config", str(config_file)]


def run_command(command: Sequence[str], on_line: Callable[[str], None]) -> None:
    """Run ``command``, sending each line it prints (stdout and stderr; carriage-return updates split) to the
    log and to ``on_line``. A non-zero exit is an ``EquituneError`` quoting the last lines printed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tail: collections.deque[str] = collections.deque(maxlen=30)
    process = subprocess.Popen(
        list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    )
    assert process.stdout is not None
    try:
        for raw in process.stdout:
            for part in raw.rstrip("\n").split("\r"):
                if part.strip():
                    tail.append(part)
                    log.info("mlx-lm: %s", part)
                    on_line(part)
        code = process.wait()
    finally:
        if process.poll() is None:  # on_line raised, or we were interrupted: do not leave mlx-lm running
            process.terminate()
            process.wait()
    if code != 0:
        shown = "\n  ".join(tail)
        raise EquituneError(f"mlx-lm exited with status {code}; its last lines:\n  {shown}")


# ------------------------------------------------------------------------------------------- progress lines

_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))"
_TRAIN = re.compile(rf"^Iter (\d+): Train loss {_NUMBER}")
_VAL = re.compile(rf"^Iter (\d+): Val loss {_NUMBER}")
_TEST = re.compile(rf"^Test loss {_NUMBER}")
_LR = re.compile(rf"Learning Rate {_NUMBER}")
_TOKENS_PER_S = re.compile(rf"Tokens/sec {_NUMBER}")
_TRAINED_TOKENS = re.compile(r"Trained Tokens (\d+)")


def parse_mlx_line(line: str) -> dict[str, Any] | None:
    """What one line of mlx-lm's output reports, or None for any other line. A line
    ``Iter 10: Train loss 1.234, Learning Rate 1.000e-05, It/sec 2.1, Tokens/sec 900.0, Trained Tokens 4500, ...``
    gives ``{"kind": "train", "iter": 10, "loss": 1.234, "lr": 1e-05, "tokens_per_s": 900.0,
    "trained_tokens": 4500}``; ``Iter 1: Val loss 2.345, Val took 0.5s`` gives ``{"kind": "val", "iter": 1,
    "val_loss": 2.345}``; ``Test loss 1.100, Test ppl 3.004.`` gives ``{"kind": "test", "val_loss": 1.1}``."""
    text = line.strip()
    train = _TRAIN.match(text)
    if train:
        found: dict[str, Any] = {"kind": "train", "iter": int(train.group(1)), "loss": float(train.group(2))}
        for key, pattern, kind in (
            ("lr", _LR, float),
            ("tokens_per_s", _TOKENS_PER_S, float),
            ("trained_tokens", _TRAINED_TOKENS, int),
        ):
            match = pattern.search(text)
            if match:
                found[key] = kind(match.group(1))
        return found
    val = _VAL.match(text)
    if val:
        return {"kind": "val", "iter": int(val.group(1)), "val_loss": float(val.group(2))}
    test = _TEST.match(text)
    if test:
        return {"kind": "test", "val_loss": float(test.group(1))}
    return None


@dataclass
class MlxMetrics:
    """metrics.jsonl lines built from mlx-lm's reports, in equitune's terms: a train line at optimiser step
    ``iter``; a validation line at step ``iter - 1`` (mlx-lm evaluates before that iteration's update, so
    'Iter 1' is the loss before training); the final test-on-valid line at the last step."""

    global_batch: int
    num_train: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    last_step: int = 0
    trained_tokens: int = 0

    def add(self, report: dict[str, Any]) -> dict[str, Any]:
        """The metrics line for one parsed report (also kept in ``lines``)."""
        if report["kind"] == "train":
            self.last_step = report["iter"]
            self.trained_tokens = report.get("trained_tokens", self.trained_tokens)
            line: dict[str, Any] = {"step": report["iter"], "epoch": self.epoch(report["iter"]), "loss": report["loss"]}
            if "lr" in report:
                line["lr"] = report["lr"]
            line["label_tokens"] = self.trained_tokens
            if "tokens_per_s" in report:
                line["tokens_per_s"] = report["tokens_per_s"]
        elif report["kind"] == "val":
            step = report["iter"] - 1
            line = {"step": step, "epoch": self.epoch(step), "val_loss": report["val_loss"]}
        else:
            line = {"step": self.last_step, "epoch": self.epoch(self.last_step), "val_loss": report["val_loss"]}
        self.lines.append(line)
        return line

    def epoch(self, step: int) -> float:
        return round(step * self.global_batch / max(self.num_train, 1), 4)

    def train_losses(self) -> list[float]:
        return [float(m["loss"]) for m in self.lines if "loss" in m]

    def val_losses(self) -> list[tuple[int, float]]:
        return [(int(m["step"]), float(m["val_loss"])) for m in self.lines if "val_loss" in m]


# ------------------------------------------------------------------------------------------- adapter conversion


def _pairs(tensors: Mapping[str, np.ndarray], a_suffix: str, b_suffix: str) -> dict[str, tuple[str, str]]:
    """module name -> (A key, B key); any tensor that is not half of such a pair is an error."""
    modules: dict[str, tuple[str, str]] = {}
    stray = []
    for key in tensors:
        if key.endswith(a_suffix):
            module = key[: -len(a_suffix)]
            if module + b_suffix in tensors:
                modules[module] = (key, module + b_suffix)
                continue
        elif key.endswith(b_suffix) and key[: -len(b_suffix)] + a_suffix in tensors:
            continue
        stray.append(key)
    if stray:
        raise EquituneError(
            f"not a plain LoRA adapter: tensors {sorted(stray)[:5]} are not {a_suffix}/{b_suffix} pairs "
            "(DoRA, full fine-tuning and mixture-of-experts adapters cannot be converted)"
        )
    if not modules:
        raise EquituneError("the adapter holds no LoRA tensors")
    return modules


def _rank(shapes: Sequence[int]) -> int:
    ranks = set(shapes)
    if len(ranks) != 1:
        raise EquituneError(f"the adapter mixes LoRA ranks {sorted(ranks)}; PEFT's layout needs one rank")
    return ranks.pop()


def mlx_to_peft(tensors: Mapping[str, np.ndarray], scale: float, alpha: float) -> dict[str, np.ndarray]:
    """mlx-lm LoRA tensors (``<module>.lora_a`` (in, r), ``<module>.lora_b`` (r, out), update scaled by
    ``scale``) -> PEFT tensors (``base_model.model.<module>.lora_A.weight`` (r, in), ``.lora_B.weight`` (out, r),
    update scaled by ``alpha / r``) that give the same delta W = scale * lora_b.T @ lora_a.T."""
    modules = _pairs(tensors, ".lora_a", ".lora_b")
    for module, (a_key, b_key) in modules.items():
        a, b = tensors[a_key], tensors[b_key]
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise EquituneError(f"{module}: lora_a {a.shape} and lora_b {b.shape} are not (in, r) and (r, out)")
    rank = _rank([tensors[a_key].shape[1] for a_key, _ in modules.values()])
    factor = scale / (alpha / rank)
    out: dict[str, np.ndarray] = {}
    for module, (a_key, b_key) in sorted(modules.items()):
        b_t = tensors[b_key].T
        if factor != 1.0:
            b_t = (b_t.astype(np.float64) * factor).astype(tensors[b_key].dtype)
        out[f"{PEFT_PREFIX}{module}.lora_A.weight"] = np.ascontiguousarray(tensors[a_key].T)
        out[f"{PEFT_PREFIX}{module}.lora_B.weight"] = np.ascontiguousarray(b_t)
    return out


def peft_to_mlx(tensors: Mapping[str, np.ndarray], scale: float, alpha: float) -> dict[str, np.ndarray]:
    """The inverse of :func:`mlx_to_peft`: PEFT LoRA tensors -> mlx-lm tensors for an update scaled by ``scale``."""
    modules = _pairs(tensors, ".lora_A.weight", ".lora_B.weight")
    rank = _rank([tensors[a_key].shape[0] for a_key, _ in modules.values()])
    factor = (alpha / rank) / scale
    out: dict[str, np.ndarray] = {}
    for module, (a_key, b_key) in sorted(modules.items()):
        if not module.startswith(PEFT_PREFIX):
            raise EquituneError(f"{a_key}: not a PEFT adapter tensor name (no '{PEFT_PREFIX}' prefix)")
        name = module[len(PEFT_PREFIX) :]
        b = tensors[b_key].T
        if factor != 1.0:
            b = (b.astype(np.float64) * factor).astype(tensors[b_key].dtype)
        out[f"{name}.lora_a"] = np.ascontiguousarray(tensors[a_key].T)
        out[f"{name}.lora_b"] = np.ascontiguousarray(b)
    return out


def peft_targets(tensors: Mapping[str, np.ndarray]) -> list[str]:
    """The module names (``q_proj``, ...) a PEFT adapter's tensors adapt."""
    names = {key.split(".lora_A.")[0].rsplit(".", 1)[-1] for key in tensors if ".lora_A." in key}
    return sorted(names)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file as numpy arrays (bfloat16 tensors, which numpy lacks, widened to float32)."""
    import torch
    from safetensors.torch import load_file

    if not path.is_file():
        raise EquituneError(f"{path}: no such adapter file")
    return {
        key: (value.float() if value.dtype == torch.bfloat16 else value).numpy()
        for key, value in load_file(str(path)).items()
    }


def write_safetensors(path: Path, tensors: Mapping[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def write_peft_adapter(
    folder: Path, tensors: Mapping[str, np.ndarray], lora: LoraConfig, base_model_name_or_path: str
) -> None:
    """Write PEFT ``adapter_model.safetensors`` and ``adapter_config.json`` (r from the tensors, ``lora_alpha``
    and dropout from ``lora``, target modules from the tensors) into ``folder``."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType

    rank = _rank([v.shape[0] for k, v in tensors.items() if k.endswith(".lora_A.weight")])
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / PEFT_WEIGHTS, tensors)
    PeftLoraConfig(
        r=rank,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft annotates int but scales by any number
        lora_dropout=lora.dropout,
        target_modules=peft_targets(tensors),
        task_type=TaskType.CAUSAL_LM,
        base_model_name_or_path=base_model_name_or_path,
    ).save_pretrained(str(folder))


def _adapter_lora(init_adapter: Path, configured: LoraConfig) -> LoraConfig:
    """The LoRA settings of a finished adapter (continuing keeps its rank, alpha and targets)."""
    saved = json.loads((init_adapter / "adapter_config.json").read_text(encoding="utf-8"))
    settings = LoraConfig(
        rank=int(saved["r"]),
        alpha=float(saved.get("lora_alpha") or configured.alpha),
        dropout=configured.dropout,
        target_modules=sorted(saved.get("target_modules") or configured.target_modules),
    )
    if settings.rank != configured.rank or settings.target_modules != sorted(configured.target_modules):
        log.warning(
            "continuing from %s with its own LoRA settings (r=%d, targets %s), not the configured ones",
            init_adapter,
            settings.rank,
            settings.target_modules,
        )
    return settings


# ------------------------------------------------------------------------------------------- the recipe


def train_mlx(
    config: EquituneConfig,
    resolved: ResolvedBase,
    train_file: Path,
    valid_file: Path | None,
    out: Path,
    *,
    init_adapter: Path | None = None,
    progress: bool = True,
    runner: Runner = run_command,
    cache_root: Path | None = None,
) -> TrainResult:
    """Train LoRA adapters on ``resolved`` with mlx-lm and leave the same files as the transformers backend in
    ``out`` (see the module docstring). ``init_adapter`` continues from a finished PEFT adapter; ``runner`` runs
    the mlx-lm command (a subprocess by default)."""
    from equitune.train.checkpoint import replace_dir
    from equitune.train.dataset import file_sha256
    from equitune.train.loop import TrainResult
    from equitune.train.qlora import hf_model_source
    from equitune.train.report import METRICS_FILE, PLOT_FILE, REPORT_FILE, MetricsLog, plot_loss_curve, write_report

    started = time.perf_counter()
    work = out / "mlx"
    data_dir, adapters = work / "data", work / "adapters"
    num_train, num_valid = write_mlx_data(train_file, valid_file, data_dir)
    lora = config.lora_config
    resume_file = None
    if init_adapter is not None:
        lora = _adapter_lora(init_adapter, lora)
        resume_file = work / "init_adapters.safetensors"
        peft_tensors = read_safetensors(init_adapter / PEFT_WEIGHTS)
        write_safetensors(resume_file, peft_to_mlx(peft_tensors, lora.alpha / lora.rank, lora.alpha))
    model_source = hf_model_source(resolved, cache_root)
    settings = mlx_lora_config(config.training, lora, model_source, data_dir, adapters, num_train, resume_file)
    check_mlx_batches(settings["batch_size"], num_train, num_valid)
    config_file = work / "lora_config.yaml"
    atomic_write_text(config_file, yaml.safe_dump(settings, sort_keys=False))
    if config.training.early_stopping_patience is not None:
        log.warning("the mlx backend has no early stopping: training.early_stopping_patience is not used")

    metrics_log = MetricsLog(out / METRICS_FILE)
    metrics_log.rewrite([])
    metrics = MlxMetrics(global_batch=settings["batch_size"], num_train=num_train)
    total_steps = int(settings["iters"])
    with _progress(progress) as bar:
        task = bar.add_task("train", total=total_steps, loss="-")

        def on_line(line: str) -> None:
            report = parse_mlx_line(line)
            if report is None:
                return
            metrics_log.append(metrics.add(report))
            if report["kind"] == "train":
                bar.update(task, completed=report["iter"], loss=f"{report['loss']:.3f}")

        command = mlx_command(sys.executable, config_file)
        log.info("running %s", " ".join(command))
        runner(command, on_line)
    wall_time = round(time.perf_counter() - started, 3)

    losses = metrics.train_losses()
    if not losses:
        raise EquituneError(f"mlx-lm finished without reporting a training loss; see the log ({config_file})")
    if not all(math.isfinite(v) for v in losses):
        raise EquituneError("the mlx-lm training loss became non-finite; lower the learning rate")

    # -- the adapter, in PEFT layout
    scale = float(settings["lora_parameters"]["scale"])
    peft_tensors = mlx_to_peft(read_safetensors(adapters / ADAPTER_FILE), scale, lora.alpha)
    adapter_dir = out / "adapter"
    tmp = adapter_dir.with_name(f".{adapter_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_peft_adapter(tmp, peft_tensors, lora, resolved.source)
    _save_tokenizer(model_source, tmp)
    vals = metrics.val_losses()
    val_after = vals[-1][1] if vals and vals[-1][0] == metrics.last_step else None
    atomic_write_json(
        tmp / "equitune_adapter.json", {"step": metrics.last_step, "val_loss": val_after, "base_model": resolved.name}
    )
    replace_dir(tmp, adapter_dir)

    # -- metrics, curve, report
    metrics_log.rewrite(metrics.lines)
    plot_path = plot_loss_curve(metrics.lines, out / PLOT_FILE, title=f"LoRA training of {resolved.name} (mlx-lm)")
    atomic_write_json(
        out / "train_config.json",
        {
            "training": config.training.model_dump(mode="json"),
            "lora": lora.model_dump(mode="json"),
            "base_model": resolved.name,
            "mlx": settings,
        },
    )
    best = min(vals, key=lambda v: v[1]) if vals else None
    tokens = metrics.trained_tokens
    result = TrainResult(
        out_dir=out,
        adapter_dir=adapter_dir,
        checkpoint_dir=None,
        metrics_path=metrics_log.path,
        plot_path=plot_path,
        report_path=out / REPORT_FILE,
        steps=metrics.last_step,
        total_steps=total_steps,
        epoch=metrics.epoch(metrics.last_step),
        tokens=tokens,
        label_tokens=tokens,
        wall_time_s=wall_time,
        tokens_per_s=tokens / max(wall_time, 1e-9),
        train_loss_first=losses[0],
        train_loss_last=losses[-1],
        val_loss_before=vals[0][1] if vals and vals[0][0] == 0 else None,
        val_loss_after=val_after,
        best_val_loss=best[1] if best else None,
        best_step=best[0] if best else None,
        stopped_early=False,
        precision="mlx",
    )
    write_report(
        result.report_path,
        {
            "backend": "mlx",
            "base_model": resolved.name,
            "model_source": model_source,
            "data": {
                "train": {"file": str(train_file), "sha256": file_sha256(train_file)},
                "valid": {"file": str(valid_file), "sha256": file_sha256(valid_file)} if valid_file else None,
            },
            "init_adapter": str(init_adapter) if init_adapter is not None else None,
            "examples": {"train": num_train, "valid": num_valid},
            "truncation": None,  # mlx-lm truncates to max_seq_length itself and does not count it
            "steps": result.steps,
            "total_steps": total_steps,
            "epochs": result.epoch,
            "tokens": tokens,  # mlx-lm counts the tokens that carry loss (the assistant turns)
            "label_tokens": tokens,
            "trainable_parameters": int(sum(v.size for v in peft_tensors.values())),
            "wall_time_s": wall_time,
            "tokens_per_s": round(result.tokens_per_s, 2),
            "precision": result.precision,
            "processes": 1,
            "global_batch_size": settings["batch_size"],
            "train_loss_first": result.train_loss_first,
            "train_loss_last": result.train_loss_last,
            "val_loss_before": result.val_loss_before,
            "val_loss_after": result.val_loss_after,
            "best_val_loss": result.best_val_loss,
            "best_step": result.best_step,
            "adapter_step": result.steps,  # mlx-lm keeps the last adapter, not the best one
            "stopped_early": False,
            "adapter_dir": str(adapter_dir),
            "checkpoint": None,
            "mlx_config": str(config_file),
            "mlx_adapter": str(adapters / ADAPTER_FILE),
        },
    )
    log.info("mlx training done: %d steps, final validation loss %s", result.steps, val_after)
    return result


def _save_tokenizer(model_source: str, folder: Path) -> None:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_source)
    except (OSError, ValueError) as exc:
        raise EquituneError(f"Could not read the tokenizer of {model_source} for the adapter folder: {exc}") from exc
    tokenizer.save_pretrained(str(folder))


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]training (mlx-lm)"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
