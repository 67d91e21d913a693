"""The complete workflow with resumable state: data -> train -> export -> evaluate -> report.

Each step is a plain function ``(config, ctx) -> outputs`` registered in ``DEFAULT_STEPS``; callers (and tests)
pass other functions in. ``finetuning_workflow/state.json`` records, per step, its status, the hash of its
inputs (the equitune version, the config sections it reads and the identity of the earlier steps it builds on),
its outputs, when it started and finished and the error that stopped it. A re-run skips the steps that are done
with unchanged inputs and present outputs, redoes a step that was killed or failed (the train step then resumes
from its last checkpoint), and redoes every step after one that ran again. ``--from-step`` and ``--force`` redo
on request.

``workflow_main`` is the command line (``python run_complete_finetuning.py``, ``equitune run``);
``validate_setup`` is its ``--validate-only`` checklist.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from rich.console import Console
from rich.markup import escape

import equitune
from equitune.config import EquituneConfig
from equitune.errors import ConfigError, EquituneError
from equitune.io import atomic_write_json
from equitune.registry import sha256_file

log = logging.getLogger("equitune.pipeline")

STEPS: tuple[str, ...] = ("data", "train", "export", "evaluate", "report")
STATE_FILE = "state.json"
LOCK_FILE = ".lock"
STATE_SCHEMA_VERSION = 1
DEFAULT_PROG = "python run_complete_finetuning.py"

Status = Literal["pending", "running", "done", "failed"]

# What each step reads: dotted config keys, and the earlier steps whose outputs it builds on. A step's inputs hash
# covers both (and those steps' own inputs hashes) plus the equitune version, so a change anywhere upstream, or an
# upgrade that changes generation or scoring, invalidates it. The data and evaluate steps value the companies with
# ``valuation``; both always use the embedded market snapshot (``equitune.market.providers.embedded``), never the
# configured ``market`` provider, so ``market`` is not among their inputs.
STEP_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "data": (("data", "valuation", "paths.training_data"), ()),
    "train": (("model_selection", "lora_config", "training", "paths.finetuned_models"), ("data",)),
    "export": (("export", "paths.registry"), ("train",)),
    "evaluate": (("evaluation", "model_selection", "valuation", "paths.evaluation_results"), ("export",)),
    "report": (("paths.finetuning_workflow",), ("data", "train", "export", "evaluate")),
}


class WorkflowBusyError(EquituneError):
    """Another workflow holds the lock of the same workflow folder."""


# ---------------------------------------------------------------------------------------- state


@dataclass
class StepContext:
    """What a step function gets besides the configuration."""

    workflow_dir: Path
    """``paths.finetuning_workflow``: state.json and the performance report."""
    outputs: dict[str, dict[str, Any]]
    """The outputs of the steps before this one (from this run, or recorded by an earlier one)."""
    resume: bool
    """True when this step was killed or failed last time with the same inputs: continue where it stopped."""
    progress: bool
    """Whether to show progress bars."""
    log_path: Path
    """The log file (``paths.logs/ollama_equity_research.log``)."""


StepFn = Callable[[EquituneConfig, StepContext], dict[str, Any]]


@dataclass
class StepRecord:
    """One step's entry in state.json."""

    status: Status = "pending"
    inputs_hash: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    error: str | None = None
    resumed: bool = False
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "inputs_hash": self.inputs_hash,
            "outputs": self.outputs,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "resumed": self.resumed,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepRecord:
        status = data.get("status", "pending")
        if status not in ("pending", "running", "done", "failed"):
            status = "pending"
        return cls(
            status=status,
            inputs_hash=data.get("inputs_hash"),
            outputs=dict(data.get("outputs") or {}),
            started=data.get("started"),
            finished=data.get("finished"),
            error=data.get("error"),
            resumed=bool(data.get("resumed", False)),
            attempts=int(data.get("attempts", 0)),
        )


@dataclass
class WorkflowState:
    """``state.json``: every step's record, the config file and the command line of the latest run."""

    path: Path
    steps: dict[str, StepRecord] = field(default_factory=lambda: {s: StepRecord() for s in STEPS})
    config_path: str | None = None
    command: str | None = None
    resume_command: str | None = None
    created: str | None = None
    updated: str | None = None

    @classmethod
    def load(cls, path: Path, *, ignore_errors: bool = False) -> WorkflowState:
        """Read ``path``; a missing file is a fresh state. An unreadable one is an error (or, with
        ``ignore_errors``, e.g. under --force, replaced by a fresh state)."""
        if not path.is_file():
            return cls(path, created=_now())
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("steps", {}), dict):
                raise ValueError("not an object with 'steps'")
        except (ValueError, OSError) as exc:
            if ignore_errors:
                log.warning("%s is unreadable (%s); starting from a fresh state", path, exc)
                return cls(path, created=_now())
            raise EquituneError(f"{path} is unreadable ({exc}); delete it or run with --force to start over") from None
        stored = data.get("steps", {})
        steps = {s: StepRecord.from_dict(stored.get(s) or {}) for s in STEPS}
        return cls(
            path,
            steps=steps,
            config_path=data.get("config_path"),
            command=data.get("command"),
            resume_command=data.get("resume_command"),
            created=data.get("created") or _now(),
            updated=data.get("updated"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": STATE_SCHEMA_VERSION,
            "config_path": self.config_path,
            "command": self.command,
            "resume_command": self.resume_command,
            "created": self.created,
            "updated": self.updated,
            "steps": {name: record.to_dict() for name, record in self.steps.items()},
        }

    def save(self) -> None:
        """Write the state atomically, so a kill never leaves half a state file."""
        self.updated = _now()
        atomic_write_json(self.path, self.to_dict())


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _dig(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def inputs_hash(step: str, config: EquituneConfig, records: Mapping[str, StepRecord]) -> str:
    """The sha256 of what ``step`` reads: the equitune version, its config sections (``STEP_INPUTS``) and, for each
    earlier step it builds on, that step's inputs hash and outputs (which hold file hashes, e.g. of the training
    data)."""
    keys, after = STEP_INPUTS[step]
    dumped = config.model_dump(mode="json")
    payload = {
        "step": step,
        "version": equitune.__version__,
        "config": {key: _dig(dumped, key) for key in keys},
        "after": {name: {"inputs_hash": records[name].inputs_hash, "outputs": records[name].outputs} for name in after},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def missing_outputs(outputs: Mapping[str, Any]) -> list[str]:
    """The paths in ``outputs["files"]`` that no longer exist (a step whose files are gone is redone)."""
    files = outputs.get("files") or {}
    return [str(p) for p in files.values() if not Path(p).exists()]


@contextlib.contextmanager
def workflow_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.lock`` (released by the OS even when the process is killed), so two
    workflows never run in the same folder at once. Raises ``WorkflowBusyError`` naming the other process."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    handle = path.open("a+", encoding="utf-8")
    try:
        if not _try_lock(handle):
            handle.seek(0)
            other = handle.read().strip() or "unknown"
            raise WorkflowBusyError(
                f"Another workflow (pid {other}) is running in {folder}; wait for it to finish, or stop it first."
            )
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock


def _try_lock(handle: IO[str]) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------- the steps


def data_step(config: EquituneConfig, ctx: StepContext) -> dict[str, Any]:
    """Generate the training data into ``paths.training_data``; outputs the split files with their sha256."""
    from equitune.data.pipeline import generate_dataset

    summary = generate_dataset(config)
    files = {name: Path(path) for name, path in summary.files.items()}
    return {
        "out_dir": str(summary.out_dir),
        "counts": dict(summary.counts),
        "files": {name: str(path) for name, path in files.items()},
        "sha256": {name: sha256_file(files[name]) for name in ("train", "valid", "test") if name in files},
    }


def train_step(config: EquituneConfig, ctx: StepContext) -> dict[str, Any]:
    """LoRA fine-tuning on the data step's folder into ``finetuned_models/<training.output_name>/``.

    When the step was killed or failed last time (``ctx.resume``) training continues from the run's latest
    checkpoint; otherwise the run's old checkpoints are removed first, because the training loop refuses to start
    over a folder that holds another run's checkpoints."""
    from equitune.train.checkpoint import latest_checkpoint
    from equitune.train.pipeline import output_dir, run_training

    run_dir = output_dir(config)
    data_dir = Path(ctx.outputs["data"]["out_dir"]) if "data" in ctx.outputs else config.paths.training_data
    latest = latest_checkpoint(run_dir / "checkpoints") if ctx.resume else None
    if latest is not None and config.training.backend == "mlx":
        latest = None  # mlx-lm keeps no optimiser state to resume from
    if latest is None and (run_dir / "checkpoints").exists():
        log.info("starting training afresh: removing the earlier run's checkpoints in %s", run_dir / "checkpoints")
        shutil.rmtree(run_dir / "checkpoints")
    if latest is not None:
        log.info("resuming training from %s", latest)
    result = run_training(config, data_dir=data_dir, resume=latest is not None, progress=ctx.progress)
    adapter = Path(result.adapter_dir)
    weights = adapter / "adapter_model.safetensors"
    return {
        "run_dir": str(result.out_dir),
        "adapter_dir": str(adapter),
        "adapter_sha256": sha256_file(weights) if weights.is_file() else None,
        "resumed_from": latest.name if latest is not None else None,
        "steps": result.steps,
        "train_loss_last": result.train_loss_last,
        "val_loss_before": result.val_loss_before,
        "best_val_loss": result.best_val_loss,
        "tokens_per_s": result.tokens_per_s,
        "files": {
            "adapter": str(adapter),
            "metrics": str(result.metrics_path),
            "training_report": str(result.report_path),
        },
    }


def export_step(config: EquituneConfig, ctx: StepContext) -> dict[str, Any]:
    """Merge, write GGUF files and a Modelfile, register the version; create it in Ollama when reachable,
    otherwise leave it for the embedded llama.cpp runtime (through the registry) with the command for later."""
    from equitune.export.pipeline import run_export

    result = run_export(config, create=True, progress=ctx.progress)
    files = {f"gguf_{i}": str(p) for i, p in enumerate(result.gguf_files)}
    files["modelfile"] = str(result.modelfile)
    return {
        "name_tag": result.name_tag,
        "export_dir": str(result.export_dir),
        "modelfile": str(result.modelfile),
        "gguf_files": [str(p) for p in result.gguf_files],
        "adapter_gguf": str(result.adapter_gguf) if result.adapter_gguf else None,
        "created_in_ollama": result.created,
        "host": result.host,
        "runtime": "ollama" if result.created else "llama.cpp",
        "instructions": result.instructions,
        "files": files,
    }


def evaluate_step(config: EquituneConfig, ctx: StepContext) -> dict[str, Any]:
    """Benchmark the exported model against its base on the held-out prompts (``equitune.evaluate.benchmark``)."""
    from equitune.evaluate.benchmark import run_benchmark
    from equitune.report.performance import headline_numbers

    run = run_benchmark(config, ctx.outputs["export"]["name_tag"], progress=ctx.progress)
    files = {name: str(path) for name, path in run.paths.items()}
    return {
        "run": run.results.get("run"),
        "out_dir": str(run.out_dir) if run.out_dir is not None else None,
        "headline": headline_numbers(run.results),
        "files": files,
    }


def report_step(config: EquituneConfig, ctx: StepContext) -> dict[str, Any]:
    """Write ``report.html`` and ``report.md`` into the workflow folder from every earlier step's outputs."""
    from equitune.report.performance import write_performance_report

    evaluation = ctx.outputs["evaluate"]
    results_file = (evaluation.get("files") or {}).get("results")
    if not results_file:
        raise EquituneError("the evaluate step recorded no results.json; redo it with --from-step evaluate")
    results = json.loads(Path(results_file).read_text(encoding="utf-8"))
    out_dir = evaluation.get("out_dir")
    paths = write_performance_report(
        ctx.workflow_dir,
        training_dir=Path(ctx.outputs["train"]["run_dir"]),
        data_dir=Path(ctx.outputs["data"]["out_dir"]),
        results=results,
        export_info=ctx.outputs.get("export"),
        evaluation_dir=Path(out_dir) if out_dir else None,
    )
    return {"files": {name: str(path) for name, path in paths.items()}}


DEFAULT_STEPS: dict[str, StepFn] = {
    "data": data_step,
    "train": train_step,
    "export": export_step,
    "evaluate": evaluate_step,
    "report": report_step,
}


# ---------------------------------------------------------------------------------------- the runner


@dataclass
class WorkflowOutcome:
    """How a workflow run ended."""

    exit_code: int
    state: WorkflowState
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: str | None = None


def _redo_reason(record: StepRecord, current_hash: str, forced: str | None) -> str | None:
    """Why a step must run now, or None when its recorded result still holds."""
    if forced:
        return forced
    if record.status == "pending":
        return "not run yet"
    if record.status == "running":
        return "interrupted last time"
    if record.status == "failed":
        return f"failed last time ({record.error})" if record.error else "failed last time"
    if record.inputs_hash != current_hash:
        return "its inputs changed"
    gone = missing_outputs(record.outputs)
    if gone:
        return f"its output {gone[0]} is missing"
    return None


def run_workflow(
    config: EquituneConfig,
    *,
    steps: Mapping[str, StepFn] | None = None,
    from_step: str | None = None,
    force: bool = False,
    progress: bool = True,
    config_path: str | None = None,
    command: str | None = None,
    resume_command: str | None = None,
    console: Console | None = None,
) -> WorkflowOutcome:
    """Run the steps in order under the folder's lock, skipping finished ones whose inputs did not change.

    ``steps`` replaces step functions by name; ``from_step`` redoes that step and every later one; ``force`` redoes
    all. A step that raises stops the run: its record says failed with the error, and the step, the log file and
    ``resume_command`` are printed; the outcome's exit code is 1 (130 when interrupted with Ctrl-C)."""
    from equitune.logging_setup import LOG_FILE_NAME

    if from_step is not None and from_step not in STEPS:
        raise EquituneError(f"unknown step '{from_step}'; the steps are {', '.join(STEPS)}")
    functions = {**DEFAULT_STEPS, **(steps or {})}
    out = console or Console(width=None if sys.stdout.isatty() else 160)
    workflow_dir = config.paths.finetuning_workflow
    log_path = config.paths.logs / LOG_FILE_NAME
    resume_command = resume_command or DEFAULT_PROG
    first_forced = 0 if force else (STEPS.index(from_step) if from_step else len(STEPS))

    with workflow_lock(workflow_dir):
        state = WorkflowState.load(workflow_dir / STATE_FILE, ignore_errors=force)
        state.config_path, state.command, state.resume_command = config_path, command, resume_command
        outcome = WorkflowOutcome(0, state)
        outputs: dict[str, dict[str, Any]] = {}
        for index, step in enumerate(STEPS):
            previous = state.steps[step]
            current = inputs_hash(step, config, state.steps)
            forced = None
            if index >= first_forced:
                forced = "--force" if force else f"--from-step {from_step}"
            reason = _redo_reason(previous, current, forced)
            if reason is None:
                out.print(f"[dim]- {step}: done, inputs unchanged (skipped)[/dim]", highlight=False)
                outputs[step] = previous.outputs
                outcome.skipped.append(step)
                continue
            resume = forced is None and previous.status in ("running", "failed") and previous.inputs_hash == current
            record = StepRecord(
                status="running",
                inputs_hash=current,
                started=_now(),
                resumed=resume,
                attempts=previous.attempts + 1,
            )
            state.steps[step] = record
            state.save()
            note = ", resuming" if resume else ""
            out.print(f"[bold]> {step}[/bold] ({escape(reason)}{note})", highlight=False)
            log.debug("workflow step %s started (%s%s)", step, reason, note)  # the console line above says so
            ctx = StepContext(workflow_dir, dict(outputs), resume, progress, log_path)
            try:
                result = functions[step](config, ctx)
            except (Exception, KeyboardInterrupt) as exc:
                record.status, record.finished = "failed", _now()
                record.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                state.save()
                # The traceback goes to the log file only (its handler takes DEBUG); the console gets the summary below.
                log.debug("workflow step %s failed: %s\n%s", step, record.error, traceback.format_exc())
                _print_failure(step, record.error, log_path, resume_command)
                outcome.exit_code = 130 if isinstance(exc, KeyboardInterrupt) else 1
                outcome.failed = step
                return outcome
            record.outputs = json.loads(json.dumps(result, default=str))  # what state.json can hold
            record.status, record.finished = "done", _now()
            state.save()
            outputs[step] = record.outputs
            outcome.ran.append(step)
            out.print(f"[green]+ {step}[/green]: done", highlight=False)
            log.debug("workflow step %s done", step)
        _print_summary(out, outputs)
        return outcome


def _print_failure(step: str, error: str, log_path: Path, resume_command: str) -> None:
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    err.print(f"[bold red]Workflow stopped at step '{step}':[/bold red] {escape(error)}", highlight=False)
    err.print(f"  log: {log_path}", highlight=False, soft_wrap=True)
    err.print(f"  resume with: {escape(resume_command)}", highlight=False, soft_wrap=True)


def _print_summary(out: Console, outputs: Mapping[str, Mapping[str, Any]]) -> None:
    from equitune.report.performance import format_headline

    report = (outputs.get("report") or {}).get("files", {})
    export = outputs.get("export") or {}
    headline = (outputs.get("evaluate") or {}).get("headline")
    out.print("[bold green]Workflow complete.[/bold green]")
    if export.get("name_tag"):
        where = "in Ollama" if export.get("created_in_ollama") else "for the embedded llama.cpp runtime"
        out.print(f"  model: {export['name_tag']} ({where})", highlight=False)
        if export.get("instructions"):
            out.print(f"  to create it in Ollama later: {export['instructions']}", highlight=False, soft_wrap=True)
    if headline:
        out.print(f"  {escape(format_headline(headline))}", highlight=False, soft_wrap=True)
    if report.get("html"):
        out.print(f"  report: {report['html']}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------- --validate-only


@dataclass(frozen=True)
class CheckItem:
    """One line of the set-up checklist."""

    name: str
    ok: bool
    blocking: bool
    """Whether a failure of this item stops the workflow (exit 1)."""
    detail: str
    fix: str | None = None


# (module, pip name) per step; the extras of pyproject.toml install them.
STEP_PACKAGES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "train": (
        "train",
        (
            ("torch", "torch"),
            ("transformers", "transformers"),
            ("peft", "peft"),
            ("safetensors", "safetensors"),
            ("accelerate", "accelerate"),
            ("matplotlib", "matplotlib"),
        ),
    ),
    "export": ("train,serve", (("gguf", "gguf"), ("llama_cpp", "llama-cpp-python"), ("ollama", "ollama"))),
    "evaluate": ("serve", (("llama_cpp", "llama-cpp-python"),)),
}
BACKEND_PACKAGES = {"unsloth": ("unsloth", "cuda"), "mlx": ("mlx_lm", "mlx")}

# Bytes per parameter of each GGUF type, for the disk estimate.
_FORMAT_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 1.07, "q4_K_M": 0.6}
# Bytes per parameter of a GGUF file by its general.file_type, to estimate the parameters from a file's size.
_GGUF_FILE_TYPE_BYTES = {0: 4.0, 1: 2.0, 2: 0.56, 3: 0.63, 7: 1.07, 8: 0.69, 9: 0.75, 15: 0.6, 17: 0.69, 18: 0.82}
_SIZE_IN_NAME = re.compile(r"(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)
GB = 1e9


def _has_module(name: str) -> bool:
    """Whether ``name`` can be imported (found without importing it, so the check stays fast)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def estimate_parameters(name: str, source: str | None = None) -> float | None:
    """The base model's parameter count: from a size in its name (``8b``, ``135m``), else from a GGUF file's
    size and type, else from a local folder's safetensors (16-bit assumed); None when unknown."""
    found = _SIZE_IN_NAME.findall(name)
    if found:
        number, unit = found[-1]
        return float(number) * (1e9 if unit.lower() == "b" else 1e6)
    if source is None:
        return None
    path = Path(source)
    if path.is_file():
        from equitune.train.base_model import is_gguf_file, read_gguf_metadata

        if is_gguf_file(path):
            file_type = read_gguf_metadata(path, ["general.file_type"]).get("general.file_type")
            per_param = _GGUF_FILE_TYPE_BYTES.get(file_type if isinstance(file_type, int) else -1, 0.6)
            return path.stat().st_size / per_param
        return None
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.glob("*.safetensors"))
        return size / 2.0 if size else None
    return None


def _free_bytes(path: Path) -> float:
    target = path.resolve()
    while not target.exists() and target != target.parent:
        target = target.parent
    return float(shutil.disk_usage(target).free)


def _total_ram() -> float | None:
    try:
        import psutil

        return float(psutil.virtual_memory().total)
    except ImportError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def disk_needed(config: EquituneConfig, params: float | None, downloads: bool) -> float:
    """Bytes the workflow writes for a base model of ``params`` parameters: the merged float32 model, each GGUF
    format (and the f16 source of a quantised one), the base f16 GGUF that verifies the adapter, a download of
    16-bit weights when the model is not cached, plus 2 GB for data, checkpoints and evaluation."""
    if params is None:
        return 10 * GB
    formats = set(config.export.formats)
    if "q4_K_M" in formats:
        formats.add("f16")
    per_param = 4.0 + sum(_FORMAT_BYTES[f] for f in formats)
    if config.export.adapter_gguf and config.export.verify:
        per_param += 2.0
    if downloads:
        per_param += 2.0
    return params * per_param + 2 * GB


def validate_setup(config: EquituneConfig) -> list[CheckItem]:
    """Check what the workflow needs before it starts: Python packages per step and the GGUF converter, llama.cpp on
    this CPU (the features it sees, and whether the embedded model loads and generates in a probe subprocess), free disk
    and RAM against the base model's size, the configuration, Ollama (optional: the embedded llama.cpp runtime is
    the fallback), the base model and the embedded market snapshot. Every failed item carries its fix."""
    items: list[CheckItem] = [_check_config(config)]
    items += _check_packages(config)
    items.append(_check_converter())
    items.append(_check_llama_cpp())
    base_item, resolved_source, downloads = _check_base_model(config)
    params = estimate_parameters(config.model_selection.base_model, resolved_source)
    items.append(base_item)
    items.append(_check_disk(config, params, downloads))
    items.append(_check_ram(params))
    items.append(_check_ollama(config))
    items.append(_check_market(config))
    items.append(_check_workflow_folder(config))
    return items


def _check_config(config: EquituneConfig) -> CheckItem:
    from equitune.export.ollama_api import validate_model_name

    try:
        validate_model_name(config.export.model_name)
    except EquituneError as exc:
        return CheckItem("configuration", False, True, str(exc), "set export.model_name to a valid Ollama name")
    t = config.training
    length = f"{t.max_steps} steps" if t.max_steps else f"{t.num_epochs:g} epochs"
    detail = (
        f"base model {config.model_selection.base_model}; {config.data.num_examples} examples; {length}; "
        f"exported as {config.export.model_name}"
    )
    return CheckItem("configuration", True, True, detail)


def _check_packages(config: EquituneConfig) -> list[CheckItem]:
    items = []
    for step, (extra, modules) in STEP_PACKAGES.items():
        wanted = list(modules)
        backend = config.training.backend
        if step == "train" and backend in BACKEND_PACKAGES:
            module, backend_extra = BACKEND_PACKAGES[backend]
            wanted.append((module, module.replace("_", "-")))
            extra = f"{extra},{backend_extra}"
        missing = [pip for module, pip in wanted if not _has_module(module)]
        if missing:
            fix = f'pip install "equitune[{extra}]" (in a checkout: pip install -e ".[{extra}]")'
            items.append(CheckItem(f"packages for {step}", False, True, f"missing: {', '.join(missing)}", fix))
        else:
            items.append(CheckItem(f"packages for {step}", True, True, ", ".join(pip for _, pip in wanted)))
    return items


def _check_converter() -> CheckItem:
    from equitune.export.gguf import converter_dir, converter_install_command

    try:
        folder = converter_dir()
    except EquituneError as exc:
        return CheckItem("HF -> GGUF converter", False, True, str(exc).split(". ")[0], converter_install_command())
    return CheckItem("HF -> GGUF converter", True, True, str(folder))


LLAMA_FEATURES = ("AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8", "REPACK")
"""llama.cpp's system-info entries that decide which kernels run quantised weights on a CPU."""


def _check_llama_cpp(probe_timeout: float = 60.0) -> CheckItem:
    """The CPU's features, those llama.cpp was built with, and whether the embedded model loads and generates: a
    probe subprocess with llama.cpp's extra buffer types (AMX, weight repacking) and, if that one dies, without."""
    from equitune.llamacpp import CPU_FEATURES, cpu_flags, cpu_model, run_probe, system_info
    from equitune.train.base_model import embedded_gguf_path

    name = "llama.cpp on this CPU"
    flags = cpu_flags()
    cpu = f"{cpu_model()} ({' '.join(f for f in CPU_FEATURES if f in flags) or 'no AVX2/AVX-512/AMX'})"
    if not _has_module("llama_cpp"):
        fix = 'pip install "equitune[serve]"'
        return CheckItem(name, False, True, f"{cpu}; llama-cpp-python is not installed", fix)
    built = system_info()
    seen = " ".join(f for f in LLAMA_FEATURES if built.get(f) == "1") or "none of " + "/".join(LLAMA_FEATURES)
    try:
        model = embedded_gguf_path()
    except EquituneError as exc:
        return CheckItem(name, True, False, f"{cpu}; llama.cpp sees {seen}; embedded model not installed ({exc})")
    first = run_probe(model, extra_buffers=True, timeout=probe_timeout)
    head = f"{cpu}; llama.cpp sees {seen}; the embedded {model.name}"
    if first.ok:
        return CheckItem(name, True, True, f"{head} {first.describe()} ({first.seconds:.1f} s probe)")
    second = run_probe(model, extra_buffers=False, timeout=probe_timeout)
    detail = f"{head} {first.describe()} with extra buffer types (AMX, weight repacking); without them it "
    if second.ok:
        fix = (
            "nothing needed: equitune loads quantised models without extra buffer types here (slower prompts); "
            "./scripts/setup_env.sh serve builds llama-cpp-python with the AMX fix"
        )
        return CheckItem(name, False, False, detail + second.describe(), fix)
    fix = "reinstall llama-cpp-python (./scripts/setup_env.sh serve builds a checked one)"
    return CheckItem(name, False, True, detail + second.describe(), fix)


def _check_base_model(config: EquituneConfig) -> tuple[CheckItem, str | None, bool]:
    from equitune.train.base_model import resolve_base_model

    name = config.model_selection.base_model
    try:
        resolved = resolve_base_model(name)
    except EquituneError as exc:
        fix = (
            "set model_selection.base_model to smollm2:135m (embedded), an Ollama model you have pulled "
            "(ollama pull NAME), a .gguf file or a Hugging Face repo id"
        )
        return CheckItem("base model", False, True, str(exc), fix), None, False
    downloads = resolved.route == "hf" and not resolved.cached
    detail = resolved.describe()
    if downloads:
        detail += " (not cached: downloaded from the Hugging Face Hub on first use)"
    return CheckItem("base model", True, True, detail), resolved.source, downloads


def _check_disk(config: EquituneConfig, params: float | None, downloads: bool) -> CheckItem:
    need = disk_needed(config, params, downloads)
    free = _free_bytes(config.paths.finetuned_models)
    size = f"{params / 1e9:.2g}B-parameter base" if params else "base of unknown size"
    detail = f"{free / GB:,.1f} GB free, about {need / GB:,.1f} GB needed ({size})"
    if free >= need:
        return CheckItem("disk space", True, True, detail)
    fix = f"free {(need - free) / GB:,.1f} GB, point paths.finetuned_models at a larger disk, or pick a smaller base"
    return CheckItem("disk space", False, True, detail, fix)


def _check_ram(params: float | None) -> CheckItem:
    total = _total_ram()
    if total is None:
        return CheckItem("RAM", True, False, "could not read the machine's memory size")
    if params is None:
        return CheckItem("RAM", True, False, f"{total / GB:,.1f} GB (base model size unknown)")
    minimum = params * 4.0 + 1 * GB  # the export merges the adapter into float32 weights
    recommended = params * 6.0 + 2 * GB  # plus room for training activations and optimiser state
    detail = f"{total / GB:,.1f} GB; about {recommended / GB:,.1f} GB recommended, {minimum / GB:,.1f} GB at least"
    if total >= recommended:
        return CheckItem("RAM", True, False, detail)
    fix = "use a smaller base model (e.g. smollm2:135m) or a machine with more memory"
    return CheckItem("RAM", False, total < minimum, detail, fix)


def _check_ollama(config: EquituneConfig) -> CheckItem:
    from equitune.export.ollama_api import resolve_host, server_version

    host = resolve_host(config.export.ollama_host)
    try:
        version = server_version(host)
    except EquituneError:
        detail = f"not reachable at {host}: the model will be exported for the embedded llama.cpp runtime instead"
        fix = "start Ollama (ollama serve) or set export.ollama_host / OLLAMA_HOST; or go on without it"
        return CheckItem("Ollama", False, False, detail, fix)
    return CheckItem("Ollama", True, False, f"Ollama {version} at {host}: the model will be created there")


def _check_market(config: EquituneConfig) -> CheckItem:
    """The market data the workflow uses: the data step's generator and the evaluate step's contexts always read
    the embedded snapshot shipped in the package, whatever ``market.provider`` says."""
    from equitune.market.providers.embedded import load_snapshot

    try:
        companies = load_snapshot()
    except (EquituneError, OSError) as exc:
        fix = 'reinstall equitune (pip install --force-reinstall equitune; in a checkout: pip install -e ".")'
        return CheckItem("market data", False, True, f"embedded snapshot: {exc}", fix)
    if not companies:
        fix = "reinstall equitune: its embedded snapshot (equitune/market/snapshot/*.json) is missing"
        return CheckItem("market data", False, True, "the embedded snapshot holds no companies", fix)
    detail = f"{len(companies)} companies from the embedded snapshot (the data and evaluate steps always use it"
    if config.market.provider != "embedded":
        detail += f"; market.provider '{config.market.provider}' is not used by the workflow"
    return CheckItem("market data", True, True, detail + ")")


def _check_workflow_folder(config: EquituneConfig) -> CheckItem:
    folder = config.paths.finetuning_workflow
    if not folder.exists():  # a check should not create it
        return CheckItem("workflow folder", True, True, f"{folder}: not created yet (a fresh run)")
    try:
        with workflow_lock(folder):
            state = WorkflowState.load(folder / STATE_FILE, ignore_errors=True)
    except WorkflowBusyError as exc:
        return CheckItem("workflow folder", False, True, str(exc), "wait for the other workflow to finish")
    except OSError as exc:
        return CheckItem("workflow folder", False, True, f"{folder}: {exc}", "set paths.finetuning_workflow")
    done = [s for s in STEPS if state.steps[s].status == "done"]
    unfinished = [s for s in STEPS if state.steps[s].status in ("running", "failed")]
    detail = f"{folder}: " + (f"done {', '.join(done)}" if done else "no step done yet")
    if unfinished:
        detail += f"; {', '.join(unfinished)} did not finish (will resume)"
    return CheckItem("workflow folder", True, True, detail)


def print_checklist(items: Sequence[CheckItem], console: Console | None = None) -> bool:
    """Print ``items`` as a checklist (with the fix under each failed one); True when nothing blocks the run."""
    out = console or Console(width=None if sys.stdout.isatty() else 160)
    for item in items:
        if item.ok:
            out.print(f"[green]✓[/green] {escape(item.name)}: {escape(item.detail)}", highlight=False, soft_wrap=True)
            continue
        label = "" if item.blocking else " [yellow](not blocking)[/yellow]"
        out.print(f"[red]✗[/red] {escape(item.name)}{label}: {escape(item.detail)}", highlight=False, soft_wrap=True)
        if item.fix:
            out.print(f"    fix: {escape(item.fix)}", highlight=False, soft_wrap=True)
    blocking = [i.name for i in items if not i.ok and i.blocking]
    if blocking:
        out.print(f"[bold red]Not ready:[/bold red] {', '.join(blocking)} must be fixed first.", highlight=False)
    else:
        out.print("[bold green]Ready:[/bold green] nothing blocks the workflow.")
    return not blocking


# ---------------------------------------------------------------------------------------- command line


def build_parser(prog: str = "run_complete_finetuning.py") -> argparse.ArgumentParser:
    """The workflow's flags (shared by ``run_complete_finetuning.py`` and ``equitune run``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The complete workflow: generate data, LoRA fine-tune, export (Ollama or the embedded "
        "llama.cpp runtime), evaluate against the base model, write the performance report. Finished steps "
        "are skipped; a killed run resumes where it stopped.",
    )
    parser.add_argument("--config", type=Path, help="config file (default ./finetune_config.json)")
    parser.add_argument(
        "--validate-only",
        action="store_true",
        help="check packages, disk, RAM, config, Ollama, base model and market data; exit 1 if something blocks",
    )
    parser.add_argument("--from-step", choices=STEPS, help="redo this step and every later one")
    parser.add_argument("--force", action="store_true", help="redo every step")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.max_steps=20 (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def resume_command_for(prog: str, config: Path | None, sets: Sequence[str], no_progress: bool) -> str:
    """The command that continues this workflow: the same config and overrides, without --force/--from-step."""
    parts = [*shlex.split(prog)]
    if config is not None:
        parts += ["--config", str(config)]
    for item in sets:
        parts += ["--set", item]
    if no_progress:
        parts.append("--no-progress")
    return shlex.join(parts)


def workflow_main(
    argv: Sequence[str] | None = None,
    *,
    steps: Mapping[str, StepFn] | None = None,
    prog: str = DEFAULT_PROG,
) -> int:
    """``python run_complete_finetuning.py [--config F] [--validate-only] [--from-step S] [--force] [--set k=v]
    [--no-progress]``: run (or check) the complete workflow; returns the exit code. ``prog`` is how the command
    was invoked (it appears in the resume command); ``steps`` replaces step functions by name."""
    from equitune.config import DEFAULT_CONFIG_FILE, load_config, parse_override
    from equitune.logging_setup import setup_logging

    args = build_parser(prog.removeprefix("python ")).parse_args(list(argv) if argv is not None else None)
    out = Console(width=None if sys.stdout.isatty() else 160)
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    if args.force and args.from_step:
        err.print("[red]Use --force (redo every step) or --from-step, not both.[/red]")
        return 2
    try:
        overrides = dict(parse_override(item) for item in args.sets)
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        if args.validate_only:
            fix = "edit the config file (check it with: equitune config validate FILE)"
            print_checklist([CheckItem("configuration", False, True, str(exc), fix)], out)
        else:
            err.print(f"[bold red]Configuration error:[/bold red] {escape(str(exc))}", highlight=False)
        return 1
    setup_logging(config.paths.logs)
    if args.validate_only:
        shown = args.config or (DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).is_file() else "defaults")
        out.print(f"Checking the set-up for the complete workflow (config: {shown})", highlight=False)
        return 0 if print_checklist(validate_setup(config), out) else 1

    config_path = args.config or (Path(DEFAULT_CONFIG_FILE) if Path(DEFAULT_CONFIG_FILE).is_file() else None)
    command = shlex.join([*shlex.split(prog), *(argv if argv is not None else sys.argv[1:])])
    try:
        outcome = run_workflow(
            config,
            steps=steps,
            from_step=args.from_step,
            force=args.force,
            progress=not args.no_progress,
            config_path=str(config_path) if config_path is not None else None,
            command=command,
            resume_command=resume_command_for(prog, args.config, args.sets, args.no_progress),
            console=out,
        )
    except EquituneError as exc:
        err.print(f"[bold red]Error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    return outcome.exit_code
