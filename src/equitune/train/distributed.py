"""Data-parallel training over several processes, launched with ``torch.distributed.run`` (torchrun).

``launch_training`` plans the processes (one per CUDA GPU with the nccl backend; on a machine without CUDA,
``--gpus N`` means N CPU processes with the gloo backend), writes the resolved configuration to a job file and
runs ``python -m torch.distributed.run --standalone --nproc_per_node N -m equitune.train.worker --job FILE``.
Every worker (``train/worker.py``) runs the same ``run_training`` -> ``train`` recipe with a ``World``:

* the global micro-batch is ``batch_size x world size`` examples, planned exactly as a single process with that
  batch size plans it; each rank takes its contiguous share of the rows (a partial last batch may leave a rank
  with none), so an optimiser step covers ``batch_size x gradient_accumulation_steps x world size`` examples;
* the loss is normalised by the label tokens of the whole step on all ranks (an all-reduced count), and the
  LoRA gradients are summed over ranks before clipping and the optimiser step, so every rank applies the same
  update and the run equals a single-process run with the same global batch (up to float rounding, with LoRA
  dropout 0: dropout masks are drawn per rank);
* evaluation is sharded the same way and its sums all-reduced, so early stopping decides identically on every
  rank; only rank 0 writes files (metrics, checkpoints, adapter, report).

The ``World`` is what the loop sees: rank, size and the collective functions passed in (no trainer subclass).

``training.distributed_strategy: fsdp`` adds PyTorch's FSDP (``fully_shard``) over the decoder layers, sharding
only their frozen base weights: each rank keeps 1/N of every layer's base weights and gathers a layer's weights
for its forward and backward pass, so a base too large for one device's memory can be trained. The LoRA weights
are left out of the sharding (``ignored_params``): they stay whole on every rank and their gradients are summed
exactly as above, so adapters, optimiser state, checkpoints and resume are the same files as in a ddp run, and
the run still equals a single-process run. Embeddings, final norm and head stay whole (replicated). Every layer
reshards after each forward pass (also in evaluation), so all ranks gather the same layers in the same order
whatever rank 0 alone does in between (reading the adapter's state dict to save it reshards too).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equitune.errors import EquituneError
from equitune.io import atomic_write_json

if TYPE_CHECKING:
    import torch

    from equitune.config import EquituneConfig
    from equitune.train.dataset import Batch
    from equitune.train.loop import TrainResult

log = logging.getLogger(__name__)

LAUNCHER_MODULE = "torch.distributed.run"
WORKER_MODULE = "equitune.train.worker"


# ------------------------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run. The default is a single process (every method a no-op).

    ``all_reduce(tensor)`` sums a tensor over all ranks in place; ``barrier()`` waits for all ranks; ``device``
    is where this rank computes (None: wherever the model already is).
    """

    rank: int = 0
    size: int = 1
    all_reduce: Callable[[torch.Tensor], None] | None = None
    barrier: Callable[[], None] | None = None
    device: str | None = None
    sharded: bool = False  # FSDP shards layer weights: every rank must run every forward and backward pass

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise ValueError(f"rank {self.rank} is not in a world of {self.size}")
        if self.size > 1 and (self.all_reduce is None or self.barrier is None):
            raise ValueError("a world of several processes needs all_reduce and barrier functions")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs progress and writes files."""
        return self.rank == 0

    def sum(self, *values: float) -> list[float]:
        """The sums of ``values`` over all ranks (float64, so token counts stay exact)."""
        if self.size == 1 or self.all_reduce is None:
            return [float(v) for v in values]
        import torch

        buffer = torch.tensor(values, dtype=torch.float64)
        self.all_reduce(buffer)
        return [float(v) for v in buffer.tolist()]

    def sum_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Sum the gradients of ``params`` over all ranks, in place (one all-reduce per dtype and device).

        A parameter without a gradient on this rank (it saw no example this step) contributes zeros.
        """
        if self.size == 1 or self.all_reduce is None:
            return
        import torch

        groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
        for grads in groups.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            self.all_reduce(flat)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def shard(self, batches: Callable[..., Iterator[Batch]]) -> Callable[..., Iterator[Batch]]:
        """A batch function that plans global batches with ``batches`` and yields this rank's rows of each.

        Called with the global batch size. Rank r takes rows ``[r*n//size, (r+1)*n//size)`` of a batch of n
        rows, padding kept as planned (so a rank may get a batch of zero rows from a small last batch).
        """
        if self.size == 1:
            return batches
        from equitune.train.dataset import Batch

        rank, size = self.rank, self.size

        def sharded(dataset: Any, batch_size: int, seed: int, epoch: int, start: int = 0) -> Iterator[Batch]:
            for batch in batches(dataset, batch_size, seed, epoch, start=start):
                rows = batch.input_ids.shape[0]
                lo, hi = rank * rows // size, (rank + 1) * rows // size
                yield Batch(
                    batch.input_ids[lo:hi], batch.attention_mask[lo:hi], batch.labels[lo:hi], batch.indices[lo:hi]
                )

        return sharded

    def reseed(self, seed: int, step: int) -> None:
        """In a run of several processes, seed this rank's RNG from (seed, step, rank) before a step, so ranks
        draw different dropout masks and a resumed run draws the same ones. A single process is left alone."""
        if self.size == 1:
            return
        import numpy as np
        import torch

        torch.manual_seed(int(np.random.SeedSequence([seed, step, self.rank]).generate_state(1)[0]))

    def wait(self) -> None:
        """Wait until every rank gets here."""
        if self.barrier is not None:
            self.barrier()


SINGLE = World()


def decoder_layers(model: Any) -> list[Any]:
    """The repeated transformer blocks of ``model`` (a PEFT-wrapped or plain causal LM): the children of the first
    ``ModuleList`` whose modules are all decoder layers or blocks."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            names = {type(child).__name__ for child in module}
            if all(name.endswith(("DecoderLayer", "Block", "Layer")) for name in names):
                return list(module)
    return []


def shard_frozen_weights(model: Any) -> int:
    """FSDP over the decoder layers of ``model``, sharding their frozen weights and leaving the trainable (LoRA)
    ones whole (see the module docstring); returns the number of layers sharded. Needs the process group."""
    from torch.distributed.fsdp import fully_shard

    layers = decoder_layers(model)
    if not layers:
        raise EquituneError(
            f"training.distributed_strategy 'fsdp': no decoder layers found in {type(model).__name__}; use 'ddp'"
        )
    for layer in layers:
        trainable = {p for p in layer.parameters() if p.requires_grad}
        fully_shard(layer, ignored_params=trainable, reshard_after_forward=True)
    return len(layers)


def init_world(backend: str, device_kind: str) -> World:
    """Join the process group that torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the
    environment) and return this process's ``World``; a CUDA rank uses the GPU numbered LOCAL_RANK."""
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = "cpu"
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    dist.init_process_group(backend=backend)

    def all_reduce(tensor: torch.Tensor) -> None:
        if tensor.device.type == "cpu" and device != "cpu":  # nccl reduces CUDA tensors only
            on_device = tensor.to(device)
            dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
            tensor.copy_(on_device)
        else:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def barrier() -> None:
        dist.barrier()

    return World(dist.get_rank(), dist.get_world_size(), all_reduce, barrier, device)


# ------------------------------------------------------------------------------------------- the launcher


@dataclass(frozen=True)
class ProcessPlan:
    """How a distributed run is laid out: processes, device kind ('cuda' or 'cpu') and backend."""

    processes: int
    device: str
    backend: str


def plan_processes(gpus: int | None, available_gpus: int | None = None) -> ProcessPlan:
    """One process per GPU with nccl when this machine has CUDA GPUs; ``gpus`` CPU processes with gloo when it
    has none. ``gpus=None`` means every visible GPU. Asking for more GPUs than are visible is an error."""
    if available_gpus is None:
        import torch

        available_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus is None:
        if available_gpus == 0:
            raise EquituneError(
                "--distributed without --gpus uses every CUDA GPU, and this machine has none; "
                "give --gpus N to run N CPU processes (gloo backend)."
            )
        gpus = available_gpus
    if gpus < 1:
        raise EquituneError(f"--gpus must be at least 1, not {gpus}")
    if available_gpus == 0:
        return ProcessPlan(gpus, "cpu", "gloo")
    if gpus > available_gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
        raise EquituneError(
            f"--gpus {gpus} asks for more GPUs than this machine has: {available_gpus} CUDA device(s) visible{where}."
        )
    return ProcessPlan(gpus, "cuda", "nccl")


def launch_command(processes: int, job_file: str | Path, python: str | None = None) -> list[str]:
    """The torchrun command line that starts ``processes`` workers on this machine for ``job_file``."""
    return [
        python or sys.executable,
        "-m",
        LAUNCHER_MODULE,
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        WORKER_MODULE,
        "--job",
        str(job_file),
    ]


def worker_env(plan: ProcessPlan, base: dict[str, str] | None = None) -> dict[str, str]:
    """The workers' environment: CPU processes share the cores (OMP_NUM_THREADS, unless already set)."""
    env = dict(os.environ if base is None else base)
    if plan.device == "cpu" and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // plan.processes))
    return env


def launch_training(
    config: EquituneConfig,
    gpus: int | None,
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
    timeout_s: float | None = None,
) -> TrainResult:
    """``run_training`` on ``gpus`` data-parallel processes (see the module docstring); returns rank 0's result.

    Raises ``EquituneError`` when the plan is impossible or a worker fails (its error is in the log above).
    """
    from equitune.errors import DataError
    from equitune.train.backends import check_qlora, detect_machine

    # the errors every worker would hit, said once before starting any
    check_qlora(use_qlora, four_bit, detect_machine())
    train_file = new_data if new_data is not None else (data_dir or config.paths.training_data) / "train.jsonl"
    if not train_file.is_file():
        raise DataError(f"{train_file}: no training data; run `equitune data generate` first")
    plan = plan_processes(gpus)
    if plan.device == "cpu":
        log.info(
            "no CUDA GPU here: --gpus %d runs %d CPU processes with the gloo backend", plan.processes, plan.processes
        )
    else:
        log.info("data-parallel training on %d GPUs (nccl backend)", plan.processes)
    run = {
        "base_model": base_model,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "name": name,
        "resume": resume,
        "continue_training": continue_training,
        "new_data": str(new_data) if new_data is not None else None,
        "use_qlora": use_qlora,
        "four_bit": four_bit,
        "progress": progress,
    }
    with tempfile.TemporaryDirectory(prefix="equitune-ddp-") as tmp:
        job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
        atomic_write_json(
            job_file,
            {
                "config": config.model_dump(mode="json"),
                "device": plan.device,
                "backend": plan.backend,
                "run": run,
                "result": str(result_file),
            },
        )
        command = launch_command(plan.processes, job_file)
        log.debug("launching: %s", " ".join(command))
        try:
            done = subprocess.run(command, env=worker_env(plan), check=False, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise EquituneError(f"distributed training did not finish within {timeout_s} s") from exc
        if done.returncode != 0 or not result_file.is_file():
            raise EquituneError(
                f"distributed training failed: torchrun with {plan.processes} {plan.device} process(es) exited "
                f"with status {done.returncode}; the workers' errors are above."
            )
        return result_from_json(json.loads(result_file.read_text(encoding="utf-8")))


def result_to_json(result: TrainResult) -> dict[str, Any]:
    """A ``TrainResult`` as JSON-ready values (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()}


def result_from_json(data: dict[str, Any]) -> TrainResult:
    """The inverse of ``result_to_json``."""
    from equitune.train.loop import TrainResult

    values = dict(data)
    for f in dataclasses.fields(TrainResult):
        if str(f.type).startswith("Path") and values.get(f.name) is not None:
            values[f.name] = Path(values[f.name])
    return TrainResult(**values)
