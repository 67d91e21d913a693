"""The LoRA training recipe: wrap, optimise, evaluate, checkpoint, report — one function read top to bottom.

``train(model, tokenizer, train_set, valid_set, config, lora, out_dir)`` takes an already-loaded model and
tokenizer (see ``train/base_model.py``) and tokenised data (``train/dataset.py``). The loss and the batch
iterator are passed in as functions (``loss_fn=``, ``batches=``), as in mlx-lm's ``tuner/trainer.py``.

Output folder::

    out_dir/adapter/                 best adapter (lowest validation loss), PEFT safetensors + tokenizer
    out_dir/checkpoints/step-N/      resumable checkpoints (the newest two), the last one at the final step
    out_dir/metrics.jsonl            one line per logged step and per evaluation
    out_dir/loss_curve.png           training and validation loss
    out_dir/training_report.json     what was trained on, how long, and how well
    out_dir/train_config.json        the training and LoRA settings used
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as recompute

from equitune.config import LoraConfig, TrainingConfig
from equitune.errors import EquituneError
from equitune.io import atomic_write_json
from equitune.train.allocator import retain_freed_memory
from equitune.train.attention import install_block_causal, remove_block_causal
from equitune.train.checkpoint import (
    TrainState,
    checkpoints,
    latest_checkpoint,
    load_checkpoint,
    replace_dir,
    save_checkpoint,
)
from equitune.train.compiled import compile_layers, remove_compile, should_compile
from equitune.train.dataset import IGNORE_INDEX, Batch, TokenizedDataset, batches_per_epoch, iterate_batches
from equitune.train.distributed import SINGLE, World
from equitune.train.fast_ops import fused_linear_cross_entropy, install_fast_dropout
from equitune.train.int8_ops import cpu_int8_supported, install_int8, remove_int8
from equitune.train.report import METRICS_FILE, PLOT_FILE, REPORT_FILE, MetricsLog, plot_loss_curve, write_report

log = logging.getLogger(__name__)

LossFn = Callable[[Any, Batch], torch.Tensor]
BatchFn = Callable[..., Iterator[Batch]]
LOSS_CHUNK_ROWS = 1024


@dataclass
class TrainResult:
    """The outcome of ``train``: where things are and the headline numbers (also in training_report.json)."""

    out_dir: Path
    adapter_dir: Path
    checkpoint_dir: Path | None
    metrics_path: Path
    plot_path: Path
    report_path: Path
    steps: int
    total_steps: int
    epoch: float
    tokens: int
    label_tokens: int
    wall_time_s: float
    tokens_per_s: float
    train_loss_first: float | None
    train_loss_last: float | None
    val_loss_before: float | None
    val_loss_after: float | None
    best_val_loss: float | None
    best_step: int | None
    stopped_early: bool
    precision: str
    compiled: bool = False  # decoder layers compiled (train/compiled.py)


# ------------------------------------------------------------------------------------------- pieces


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' on a bf16-capable CUDA GPU; on CPU 'int8' where the CPU has int8 dot-product instructions
    (:func:`~equitune.train.int8_ops.cpu_int8_supported`), else 'bf16' where a bf16 matmul measures clearly
    faster than fp32 (:func:`cpu_bf16_speedup`), else 'fp32'. Explicit choices are kept; 'int8' is CPU only."""
    if precision == "int8" and device.type != "cpu":
        raise EquituneError(
            "training.precision int8 is the CPU path (int8 matmuls through the frozen base weights); "
            "on a GPU use bf16, fp16 or --use-qlora --4bit"
        )
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if cpu_int8_supported():
        log.info("precision auto -> int8 (this CPU has int8 dot-product instructions)")
        return "int8"
    # CPUs differ: one 2-core AVX512-BF16 machine ran bf16 matmuls at 2.1x fp32, another at 0.57x (and its
    # training step at 0.6x). A 1.3x margin covers the casts and the ops that stay in fp32.
    bf16 = cpu_bf16_speedup()
    choice = "bf16" if bf16 >= 1.3 else "fp32"
    log.info("precision auto -> %s (bf16 matmuls measured %.2fx fp32 on this CPU)", choice, bf16)
    return choice


def speed_ratio(candidate: Callable[[], Any], reference: Callable[[], Any], rounds: int = 7) -> float:
    """How many times faster ``candidate`` runs than ``reference``: the two alternate for ``rounds`` rounds of
    about 15 ms each and the best time per call of each counts, so a busy moment or a cold first call on a
    shared machine does not decide."""
    best = {"candidate": math.inf, "reference": math.inf}
    for run in (candidate, reference):
        run()  # warm up: allocation, kernel selection
    for _ in range(rounds):
        for key, run in (("reference", reference), ("candidate", candidate)):
            started, calls = time.perf_counter(), 0
            while calls < 2 or time.perf_counter() - started < 0.015:
                run()
                calls += 1
            best[key] = min(best[key], (time.perf_counter() - started) / calls)
    return best["reference"] / best["candidate"]


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup() -> float:
    """Measured bf16/fp32 throughput ratio of a training-sized matmul on this CPU (about 0.2 s, cached)."""
    a, w = torch.randn(1024, 576), torch.randn(1536, 576)
    a16, w16 = a.to(torch.bfloat16), w.to(torch.bfloat16)
    ratio = speed_ratio(lambda: F.linear(a16, w16), lambda: F.linear(a, w))
    log.debug("CPU bf16/fp32 matmul throughput: %.2fx", ratio)
    return ratio


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    # bf16 runs on bf16 base weights (cast once in ``train``) and int8 through its own layers
    # (``train/int8_ops.py``), so neither needs autocast; only fp16 does.
    if precision != "fp16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16)


def wrap_lora(model: Any, lora: LoraConfig, init_adapter: str | Path | None) -> Any:
    """The model with trainable LoRA adapters: new ones from ``lora``, or those of a finished adapter. A model that
    already carries adapters (Unsloth adds its own) is trained as it is."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, TaskType, get_peft_model

    if init_adapter is None and isinstance(model, PeftModel):
        return model

    if init_adapter is not None:
        path = Path(init_adapter)
        if not (path / "adapter_config.json").is_file():
            raise EquituneError(f"{path}: not a PEFT adapter folder (no adapter_config.json)")
        saved = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        if saved.get("r") != lora.rank or sorted(saved.get("target_modules") or []) != sorted(lora.target_modules):
            log.warning(
                "continuing from %s with its own LoRA settings (r=%s, targets %s), not the configured ones",
                path,
                saved.get("r"),
                saved.get("target_modules"),
            )
        return PeftModel.from_pretrained(model, str(path), is_trainable=True)
    config = PeftLoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft annotates int but scales by any number
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type=TaskType.CAUSAL_LM,
    )
    return get_peft_model(model, config)


def _decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    """(decoder trunk, lm_head) of a causal LM whose logits are plain ``lm_head(hidden)``; None otherwise."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    for scaled in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"):
        if getattr(config, scaled, None) not in (None, 1, 1.0):
            return None
    get_decoder = getattr(base, "get_decoder", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    decoder = get_decoder() if callable(get_decoder) else None
    if decoder is None or decoder is base or head is None:
        return None
    return decoder, head


def _chunk_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def causal_lm_loss(model: Any, batch: Batch) -> torch.Tensor:
    """Summed next-token cross-entropy over the labelled tokens of ``batch``.

    Logits are computed only at labelled positions, chunk by chunk (``LOSS_CHUNK_ROWS`` rows), so the (tokens x
    vocabulary) logits never exist whole: the hidden states come from the decoder trunk, and a frozen plain
    lm_head goes through :func:`fused_linear_cross_entropy` (gradient formed in the forward pass); a trainable or
    unusual head is applied per chunk with recomputation in the backward pass. Models with scaled logits use the
    plain path.
    """
    device = batch.input_ids.device
    targets_all = batch.labels[:, 1:]
    keep = targets_all != IGNORE_INDEX
    targets = targets_all[keep]
    parts = _decoder_and_head(model)
    if parts is None:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        return F.cross_entropy(logits[:, :-1][keep].float(), targets, reduction="sum")
    decoder, head = parts
    hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)[0]
    hidden = hidden[:, :-1][keep]
    if type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad:
        int8_head = getattr(head, "int8_head", None) if head.training and torch.is_grad_enabled() else None
        return fused_linear_cross_entropy(hidden, head.weight, targets, LOSS_CHUNK_ROWS, int8_head)
    rows = hidden.shape[0]
    if rows <= LOSS_CHUNK_ROWS:
        return _chunk_loss(head, hidden, targets)
    total = torch.zeros((), device=device)
    for begin in range(0, rows, LOSS_CHUNK_ROWS):
        end = begin + LOSS_CHUNK_ROWS
        total = total + recompute(_chunk_loss, head, hidden[begin:end], targets[begin:end], use_reentrant=False)
    return total


def _to(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return Batch(batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device), batch.indices)


@torch.no_grad()
def evaluate(
    model: Any,
    dataset: TokenizedDataset,
    batch_size: int,
    precision: str,
    loss_fn: LossFn = causal_lm_loss,
    batches: BatchFn = iterate_batches,
    world: World = SINGLE,
) -> float:
    """Mean cross-entropy per labelled token over ``dataset`` (eval mode: no dropout, no RNG consumed).

    In a data-parallel ``world`` each rank evaluates its rows of global batches of ``batch_size x world.size``
    and the sums are all-reduced, so every rank gets the same value."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in world.shard(batches)(dataset, batch_size * world.size, 0, 0):
            if batch.input_ids.shape[0] == 0:  # this rank's share of a small last batch
                if world.sharded:
                    _idle_pass(model, loss_fn, device, precision, backward=False)
                continue
            with _autocast(precision, device):
                total += float(loss_fn(model, _to(batch, device)))
            count += batch.num_label_tokens
    finally:
        model.train(was_training)
    total_all, count_all = world.sum(total, count)
    return total_all / max(count_all, 1)


def _idle_pass(model: Any, loss_fn: LossFn, device: torch.device, precision: str, backward: bool) -> None:
    """A pass that changes nothing, for a rank with no rows in a batch when FSDP shards the layers: the other
    ranks gather each layer's weights from every rank, so this one must run the forward (and backward) too.
    One token of loss multiplied by zero: the gradients it adds are exact zeros."""
    ids = torch.zeros((1, 2), dtype=torch.long, device=device)
    labels = torch.tensor([[IGNORE_INDEX, 0]], dtype=torch.long, device=device)
    with _autocast(precision, device):
        nothing = loss_fn(model, Batch(ids, torch.ones_like(ids), labels, ())) * 0.0
    if backward:
        nothing.backward()


def _save_adapter(model: Any, tokenizer: Any, target: Path, info: dict[str, Any]) -> None:
    """Write the adapter (safetensors), the tokenizer and a note of where it came from, atomically."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    atomic_write_json(tmp / "equitune_adapter.json", info)
    replace_dir(tmp, target)


def lr_multiplier(step: int, warmup: int, total: int, kind: str) -> float:
    """Learning-rate factor for optimiser step ``step`` (0-based) of ``total``.

    Warm-up rises linearly to the peak over ``warmup`` steps, the first step already at 1/warmup of it (a step at
    learning rate 0 would be wasted); then cosine or linear decay towards 0, or constant.
    """
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def _lr_scheduler(config: TrainingConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    if config.warmup_steps >= total_steps:
        log.warning(
            "warmup_steps=%d >= %d training steps: the learning rate never reaches its peak",
            config.warmup_steps,
            total_steps,
        )
    warmup, kind = config.warmup_steps, config.lr_scheduler
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, warmup, total_steps, kind))


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _data_hashes(train_set: TokenizedDataset, valid_set: TokenizedDataset | None) -> dict[str, Any]:
    return {
        "train": {"file": str(train_set.source) if train_set.source else None, "sha256": train_set.sha256},
        "valid": (
            {"file": str(valid_set.source) if valid_set.source else None, "sha256": valid_set.sha256}
            if valid_set is not None
            else None
        ),
    }


# ------------------------------------------------------------------------------------------- the recipe


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _retaining_freed_memory(fn: Callable[Concatenate[Any, _P], _R]) -> Callable[Concatenate[Any, _P], _R]:
    """Run ``fn(model, ...)`` with freed memory kept in the process when the model is on a CPU
    (``train/allocator.py``: a CPU step reallocates the same large buffers every step)."""

    @functools.wraps(fn)
    def wrapper(model: Any, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        on_cpu = next(model.parameters()).device.type == "cpu"
        with retain_freed_memory(on_cpu):
            return fn(model, *args, **kwargs)

    return wrapper


@_retaining_freed_memory
def train(
    model: Any,
    tokenizer: Any,
    train_set: TokenizedDataset,
    valid_set: TokenizedDataset | None,
    config: TrainingConfig,
    lora: LoraConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    init_adapter: str | Path | None = None,
    progress: bool = True,
    base_model: str | None = None,
    loss_fn: LossFn = causal_lm_loss,
    batches: BatchFn = iterate_batches,
    on_step: Callable[[int], None] | None = None,
    keep_checkpoints: int = 2,
    world: World = SINGLE,
) -> TrainResult:
    """Train LoRA adapters on ``train_set``; evaluate on ``valid_set``; keep the best adapter in
    ``out_dir/adapter``; checkpoint to ``out_dir/checkpoints``; write metrics, loss curve and report.

    ``resume=True`` continues from the newest checkpoint (and gives the same result as a run that was never
    interrupted); ``init_adapter`` starts from a finished adapter instead of new zero-initialised ones.
    ``on_step(step)`` is called after every optimiser step (and its evaluation and checkpoint).
    ``world`` makes this one rank of a data-parallel run (``train/distributed.py``): micro-batches of
    ``batch_size x world.size`` split over the ranks, gradients and counts summed, files written by rank 0 only.
    """
    main = world.is_main  # the one rank that writes files
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_root, adapter_dir = out / "checkpoints", out / "adapter"
    metrics = MetricsLog(out / METRICS_FILE)
    latest = latest_checkpoint(ckpt_root) if resume else None
    if resume and latest is None:
        log.warning("resume requested but %s holds no checkpoint; starting from the beginning", ckpt_root)
    if not resume and checkpoints(ckpt_root):
        raise EquituneError(f"{out} already holds checkpoints of a run: resume it, or train into another folder")
    valid = valid_set if valid_set is not None and len(valid_set) > 0 else None

    # -- set up: model, adapters, optimiser, schedule
    device = next(model.parameters()).device
    precision = resolve_precision(config.precision, device)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        log.info("resizing embeddings to %d tokens (the tokenizer gained a pad token)", len(tokenizer))
        model.resize_token_embeddings(len(tokenizer))
    if precision == "bf16":
        # Frozen base weights in bf16, cast once: autocast would re-cast them on every forward pass, which
        # measured slower than fp32 on CPU. PEFT keeps the trainable adapters in fp32 (autocast_adapter_dtype)
        # and the loss is computed in fp32.
        model.to(torch.bfloat16)
    torch.manual_seed(config.seed)  # the adapters' initialisation
    model = wrap_lora(model, lora, init_adapter)
    install_fast_dropout(model)
    if precision == "int8":
        if world.size > 1 and config.distributed_strategy == "fsdp":
            raise EquituneError(
                "training.precision int8 keeps whole int8 copies of the base weights, which fsdp shards: "
                "use precision fp32 with fsdp"
            )
        install_int8(model)
    block_attention = device.type == "cpu" and install_block_causal(model)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    blockers = ["gradient checkpointing"] if config.gradient_checkpointing else []
    if world.size > 1 and config.distributed_strategy == "fsdp":
        blockers.append("fsdp")
    compiled = should_compile(config.compile, model, device, blockers) and compile_layers(model) > 0
    sharded_layers = 0
    if world.size > 1 and config.distributed_strategy == "fsdp":
        from equitune.train.distributed import shard_frozen_weights

        sharded_layers = shard_frozen_weights(model)
        world = dataclasses.replace(world, sharded=True)
        log.info("fsdp: frozen weights of %d decoder layers sharded over %d processes", sharded_layers, world.size)
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    accum, batch_size = config.gradient_accumulation_steps, config.batch_size
    global_batch, train_batches = batch_size * world.size, world.shard(batches)  # micro-batch over all ranks
    steps_per_epoch = math.ceil(batches_per_epoch(train_set, global_batch) / accum)
    total_steps = config.max_steps or math.ceil(config.num_epochs * steps_per_epoch)
    scheduler = _lr_scheduler(config, optimizer, total_steps)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    if main:
        atomic_write_json(
            out / "train_config.json",
            {
                "training": config.model_dump(mode="json"),
                "lora": lora.model_dump(mode="json"),
                "base_model": base_model,
            },
        )

    state = TrainState()
    if latest is not None:
        state = load_checkpoint(latest, model, optimizer, scheduler, scaler, adapter_dir if main else None)
    if main:
        metrics.rewrite(state.metrics)
    if world.size > 1:
        log.info(
            "data-parallel over %d processes: each takes %d of every %d examples", world.size, batch_size, global_batch
        )
    log.info(
        "training %d LoRA parameters on %d examples (%d label tokens): %d steps of %d x %d examples, %s",
        trainable,
        len(train_set),
        train_set.num_label_tokens,
        total_steps,
        global_batch,
        accum,
        precision,
    )

    def record(line: dict[str, Any]) -> None:
        state.metrics.append(line)
        if main:
            metrics.append(line)

    def run_eval() -> float:
        assert valid is not None
        val = evaluate(model, valid, batch_size, precision, loss_fn, batches, world)
        state.last_val_loss, state.last_eval_step = val, state.step
        record({"step": state.step, "epoch": epoch_position(), "val_loss": val, "elapsed_s": elapsed()})
        return val

    def epoch_position() -> float:
        return round(state.epoch + state.batch_index / batches_per_epoch(train_set, global_batch), 4)

    run_start, elapsed_before = time.perf_counter(), state.elapsed_s

    def elapsed() -> float:
        return round(elapsed_before + time.perf_counter() - run_start, 3)

    if state.step == 0 and valid is not None and state.val_loss_before is None:
        state.val_loss_before = run_eval()
        log.info("validation loss before training: %.4f", state.val_loss_before)

    # -- the loop: one optimiser step per group of `accum` micro-batches
    window_tokens, window_time = 0, 0.0
    epoch_batches: Iterator[Batch] | None = None
    with _progress(progress) as bar:
        task = bar.add_task("train", total=total_steps, completed=state.step, loss="-", tps="-")
        while state.step < total_steps and not state.stopped_early:
            if epoch_batches is None:
                epoch_batches = train_batches(
                    train_set, global_batch, config.seed, state.epoch, start=state.batch_index
                )
            micro = list(itertools.islice(epoch_batches, accum))
            if not micro:
                state.epoch, state.batch_index, epoch_batches = state.epoch + 1, 0, None
                continue
            started = time.perf_counter()
            world.reseed(config.seed, state.step)  # per-rank dropout masks (a single process is left alone)
            # label tokens of the whole step on all ranks: the loss is normalised by the global count
            n_labels, step_tokens = (
                int(n) for n in world.sum(sum(b.num_label_tokens for b in micro), sum(b.num_tokens for b in micro))
            )
            n_labels = max(n_labels, 1)
            loss_sum = 0.0
            for batch in micro:
                if batch.input_ids.shape[0] == 0:  # this rank's share of a small last batch
                    if world.sharded:
                        _idle_pass(model, loss_fn, device, precision, backward=True)
                    continue
                with _autocast(precision, device):
                    part = loss_fn(model, _to(batch, device))
                scaled = part / n_labels  # normalised over the whole optimiser step, not per micro-batch
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                loss_sum += float(part.detach())
            world.sum_gradients(params)  # data-parallel: every rank now holds the gradient of the whole step
            (loss_sum,) = world.sum(loss_sum)
            if scaler is not None:
                scaler.unscale_(optimizer)
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_time = time.perf_counter() - started

            state.step += 1
            state.batch_index += len(micro)
            state.tokens += step_tokens
            state.label_tokens += n_labels
            state.train_time_s += step_time
            window_tokens, window_time = window_tokens + step_tokens, window_time + step_time
            loss = loss_sum / n_labels
            if not math.isfinite(loss):
                raise EquituneError(f"training loss became {loss} at step {state.step}; lower the learning rate")
            if state.train_loss_first is None:
                state.train_loss_first = loss
            state.train_loss_last = loss
            tps = window_tokens / max(window_time, 1e-9)
            bar.update(task, completed=state.step, loss=f"{loss:.4f}", tps=f"{tps:,.0f}")
            if state.step % config.logging_steps == 0 or state.step == total_steps:
                record(
                    {
                        "step": state.step,
                        "epoch": epoch_position(),
                        "loss": loss,
                        "lr": lr,
                        "tokens": state.tokens,
                        "label_tokens": state.label_tokens,
                        "tokens_per_s": round(tps, 2),
                        "elapsed_s": elapsed(),
                    }
                )
                window_tokens, window_time = 0, 0.0

            if valid is not None and (state.step % config.eval_steps == 0 or state.step == total_steps):
                val = run_eval()
                if state.best_val_loss is None or val < state.best_val_loss:
                    state.best_val_loss, state.best_step, state.patience = val, state.step, 0
                    info = {"step": state.step, "val_loss": val, "base_model": base_model}
                    if main:
                        _save_adapter(model, tokenizer, adapter_dir, info)
                else:
                    state.patience += 1
                    patience = config.early_stopping_patience
                    if patience is not None and state.patience >= patience:
                        log.info("early stop at step %d: %d evaluations without improvement", state.step, patience)
                        state.stopped_early = True
            if main and (state.step % config.save_steps == 0 or state.step == total_steps or state.stopped_early):
                state.elapsed_s = elapsed()
                save_checkpoint(ckpt_root, state, model, optimizer, scheduler, scaler, adapter_dir, keep_checkpoints)
            if on_step is not None:
                on_step(state.step)

    # -- finish: final evaluation and checkpoint, best adapter, curve, report
    if valid is not None and state.last_eval_step != state.step:
        run_eval()
    if valid is None and main:
        _save_adapter(model, tokenizer, adapter_dir, {"step": state.step, "val_loss": None, "base_model": base_model})
    state.elapsed_s = elapsed()
    last = latest_checkpoint(ckpt_root) if main else None  # the other ranks wrote nothing
    if main and (last is None or last.name != f"step-{state.step}"):
        last = save_checkpoint(ckpt_root, state, model, optimizer, scheduler, scaler, adapter_dir, keep_checkpoints)
    if main:
        metrics.rewrite(state.metrics)
    if compiled:
        remove_compile(model)
    if precision == "int8":
        remove_int8(model)
    if block_attention:
        remove_block_causal(model)
    plot_path = out / PLOT_FILE
    if main:
        plot_loss_curve(state.metrics, plot_path, title=f"LoRA training{f' of {base_model}' if base_model else ''}")
    tokens_per_s = state.tokens / max(state.train_time_s, 1e-9)
    result = TrainResult(
        out_dir=out,
        adapter_dir=adapter_dir,
        checkpoint_dir=last,
        metrics_path=metrics.path,
        plot_path=plot_path,
        report_path=out / REPORT_FILE,
        steps=state.step,
        total_steps=total_steps,
        epoch=epoch_position(),
        tokens=state.tokens,
        label_tokens=state.label_tokens,
        wall_time_s=state.elapsed_s,
        tokens_per_s=tokens_per_s,
        train_loss_first=state.train_loss_first,
        train_loss_last=state.train_loss_last,
        val_loss_before=state.val_loss_before,
        val_loss_after=state.last_val_loss if valid is not None else None,
        best_val_loss=state.best_val_loss,
        best_step=state.best_step,
        stopped_early=state.stopped_early,
        precision=precision,
        compiled=compiled,
    )
    if not main:
        return result
    write_report(
        result.report_path,
        {
            "base_model": base_model,
            "data": _data_hashes(train_set, valid),
            "init_adapter": str(init_adapter) if init_adapter is not None else None,
            "examples": {"train": len(train_set), "valid": len(valid) if valid is not None else 0},
            "truncation": {
                "train": train_set.truncation.as_dict(),
                "valid": valid.truncation.as_dict() if valid is not None else None,
            },
            "steps": state.step,
            "total_steps": total_steps,
            "epochs": result.epoch,
            "tokens": state.tokens,
            "label_tokens": state.label_tokens,
            "trainable_parameters": trainable,
            "wall_time_s": state.elapsed_s,
            "train_time_s": round(state.train_time_s, 3),
            "tokens_per_s": round(tokens_per_s, 2),
            "precision": precision,
            "compiled": compiled,
            "processes": world.size,
            "distributed_strategy": config.distributed_strategy if world.size > 1 else None,
            "sharded_layers": sharded_layers,
            "global_batch_size": global_batch * accum,
            "train_loss_first": state.train_loss_first,
            "train_loss_last": state.train_loss_last,
            "val_loss_before": state.val_loss_before,
            "val_loss_after": result.val_loss_after,
            "best_val_loss": state.best_val_loss,
            "best_step": state.best_step,
            "stopped_early": state.stopped_early,
            "adapter_dir": str(adapter_dir),
            "checkpoint": str(last),
        },
    )
    log.info("training done: %d steps, best validation loss %s", state.step, state.best_val_loss)
    return result
