"""The complete workflow: state.json, skipping finished steps, invalidation, --from-step/--force, failures with the
resume command, the folder lock, the --validate-only checklist, and a run killed during real (tiny) training that
resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from equitune.config import EquituneConfig, load_config
from equitune.errors import EquituneError
from equitune.pipeline import (
    STEPS,
    StepContext,
    StepRecord,
    inputs_hash,
    validate_setup,
    workflow_lock,
    workflow_main,
)

TESTS_DIR = Path(__file__).resolve().parent
CLOSED_PORT = "http://127.0.0.1:9"  # discard port: nothing answers, the connection is refused at once


def write_config(root: Path, **sections: dict[str, Any]) -> Path:
    """A config file whose every path lies under ``root``; ``sections`` are merged over the defaults here."""
    data: dict[str, Any] = {
        "model_selection": {"base_model": "smollm2:135m"},
        "export": {"ollama_host": CLOSED_PORT},
        "paths": {
            "training_data": str(root / "training_data"),
            "finetuned_models": str(root / "finetuned_models"),
            "evaluation_results": str(root / "evaluation_results"),
            "finetuning_workflow": str(root / "finetuning_workflow"),
            "logs": str(root / "logs"),
            "registry": str(root / "finetuned_models" / "registry.sqlite"),
        },
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    path = root / "cfg.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def read_state(root: Path) -> dict[str, Any]:
    return json.loads((root / "finetuning_workflow" / "state.json").read_text(encoding="utf-8"))


class FakeSteps:
    """Step functions that record their calls and contexts and write one output file each."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.contexts: dict[str, StepContext] = {}
        self.fail = fail
        self.spy: Callable[[str, StepContext], None] | None = None

    def step(self, name: str) -> Callable[[EquituneConfig, StepContext], dict[str, Any]]:
        def run(config: EquituneConfig, ctx: StepContext) -> dict[str, Any]:
            self.calls.append(name)
            self.contexts[name] = ctx
            if self.spy is not None:
                self.spy(name, ctx)
            if name == self.fail:
                raise EquituneError(f"{name} broke: disk full")
            out = ctx.workflow_dir.parent / "outputs" / f"{name}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(name, encoding="utf-8")
            return {"files": {"out": str(out)}, "value": f"{name}-result"}

        return run

    def all(self) -> dict[str, Callable[[EquituneConfig, StepContext], dict[str, Any]]]:
        return {name: self.step(name) for name in STEPS}


def run(cfg: Path, steps: FakeSteps, *extra: str) -> int:
    return workflow_main(["--config", str(cfg), "--no-progress", *extra], steps=steps.all())


# ---------------------------------------------------------------------------------------- state and re-runs


def test_runs_every_step_in_order_and_records_state(in_tmp: Path) -> None:
    cfg = write_config(in_tmp)
    steps = FakeSteps()
    seen: dict[str, dict[str, str]] = {}

    def spy(name: str, ctx: StepContext) -> None:
        state = json.loads((ctx.workflow_dir / "state.json").read_text(encoding="utf-8"))
        seen[name] = {s: state["steps"][s]["status"] for s in STEPS}

    steps.spy = spy
    assert run(cfg, steps) == 0
    assert steps.calls == list(STEPS)
    # while a step runs it is "running", the earlier ones "done", the later ones "pending"
    assert seen["train"] == {
        "data": "done",
        "train": "running",
        "export": "pending",
        "evaluate": "pending",
        "report": "pending",
    }
    # each step sees the outputs of the steps before it
    assert list(steps.contexts["evaluate"].outputs) == ["data", "train", "export"]
    assert steps.contexts["train"].outputs["data"]["value"] == "data-result"
    assert steps.contexts["train"].resume is False
    assert steps.contexts["train"].log_path == in_tmp / "logs" / "ollama_equity_research.log"

    state = read_state(in_tmp)
    assert state["config_path"] == str(cfg)
    assert state["command"].startswith("python run_complete_finetuning.py --config")
    for name in STEPS:
        record = state["steps"][name]
        assert record["status"] == "done" and record["error"] is None
        assert len(record["inputs_hash"]) == 64
        assert record["outputs"]["value"] == f"{name}-result"
        assert record["started"] <= record["finished"]
        assert record["attempts"] == 1
    assert len({state["steps"][s]["inputs_hash"] for s in STEPS}) == len(STEPS)


def test_rerun_skips_finished_steps(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(in_tmp)
    assert run(cfg, FakeSteps()) == 0
    first = read_state(in_tmp)
    capsys.readouterr()
    again = FakeSteps()
    assert run(cfg, again) == 0
    assert again.calls == []
    assert capsys.readouterr().out.count("inputs unchanged (skipped)") == len(STEPS)
    second = read_state(in_tmp)
    assert {s: second["steps"][s] for s in STEPS} == {s: first["steps"][s] for s in STEPS}


def test_changed_input_invalidates_the_step_and_every_later_one(in_tmp: Path) -> None:
    assert run(write_config(in_tmp), FakeSteps()) == 0

    training = FakeSteps()
    assert run(write_config(in_tmp, training={"learning_rate": 1e-4}), training) == 0
    assert training.calls == ["train", "export", "evaluate", "report"]

    evaluation = FakeSteps()
    assert run(write_config(in_tmp, training={"learning_rate": 1e-4}, evaluation={"max_tokens": 64}), evaluation) == 0
    assert evaluation.calls == ["evaluate", "report"]

    data = FakeSteps()
    cfg = write_config(in_tmp, training={"learning_rate": 1e-4}, evaluation={"max_tokens": 64}, data={"seed": 7})
    assert run(cfg, data) == 0
    assert data.calls == list(STEPS)

    # the same overrides given with --set are the same inputs: nothing to redo
    same = FakeSteps()
    assert run(write_config(in_tmp), same, "--set", "training.learning_rate=1e-4", "--set", "evaluation.max_tokens=64",
               "--set", "data.seed=7") == 0  # fmt: skip
    assert same.calls == []


def test_inputs_hash_covers_the_sections_a_step_reads() -> None:
    records = {s: StepRecord() for s in STEPS}
    base = EquituneConfig()
    other = EquituneConfig.model_validate({"export": {"num_ctx": 8192}})
    for step in ("data", "train", "evaluate", "report"):
        assert inputs_hash(step, base, records) == inputs_hash(step, other, records)
    assert inputs_hash("export", base, records) != inputs_hash("export", other, records)

    # the data and evaluate steps value companies with config.valuation
    valued = EquituneConfig.model_validate({"valuation": {"risk_free_rate": 0.05}})
    for step in ("data", "evaluate"):
        assert inputs_hash(step, base, records) != inputs_hash(step, valued, records)
    # both always use the embedded snapshot, so the configured market provider is none of their inputs
    market = EquituneConfig.model_validate({"market": {"provider": "yfinance"}})
    for step in STEPS:
        assert inputs_hash(step, base, records) == inputs_hash(step, market, records)


def test_valuation_change_redoes_the_data_step_and_every_later_one(in_tmp: Path) -> None:
    assert run(write_config(in_tmp), FakeSteps()) == 0
    changed = FakeSteps()
    assert run(write_config(in_tmp, valuation={"risk_free_rate": 0.05}), changed) == 0
    assert changed.calls == list(STEPS)
    # a market provider setting the workflow does not use redoes nothing
    market = FakeSteps()
    cfg = write_config(in_tmp, valuation={"risk_free_rate": 0.05}, market={"provider": "yfinance"})
    assert run(cfg, market) == 0
    assert market.calls == []


def test_new_equitune_version_redoes_every_step(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import equitune

    cfg = write_config(in_tmp)
    assert run(cfg, FakeSteps()) == 0
    monkeypatch.setattr(equitune, "__version__", equitune.__version__ + ".post1")
    upgraded = FakeSteps()
    assert run(cfg, upgraded) == 0
    assert upgraded.calls == list(STEPS)
    unchanged = FakeSteps()
    assert run(cfg, unchanged) == 0
    assert unchanged.calls == []


def test_missing_output_redoes_the_step(in_tmp: Path) -> None:
    cfg = write_config(in_tmp)
    assert run(cfg, FakeSteps()) == 0
    (in_tmp / "outputs" / "export.txt").unlink()
    again = FakeSteps()
    assert run(cfg, again) == 0
    # the export's outputs came out identical, so what was built on them still holds
    assert again.calls == ["export"]


def test_from_step_and_force(in_tmp: Path) -> None:
    cfg = write_config(in_tmp)
    assert run(cfg, FakeSteps()) == 0
    partial = FakeSteps()
    assert run(cfg, partial, "--from-step", "export") == 0
    assert partial.calls == ["export", "evaluate", "report"]
    assert partial.contexts["export"].resume is False
    everything = FakeSteps()
    assert run(cfg, everything, "--force") == 0
    assert everything.calls == list(STEPS)
    assert read_state(in_tmp)["steps"]["data"]["attempts"] == 2
    assert read_state(in_tmp)["steps"]["export"]["attempts"] == 3


def test_force_and_from_step_together_is_a_usage_error(in_tmp: Path) -> None:
    assert run(write_config(in_tmp), FakeSteps(), "--force", "--from-step", "train") == 2


def test_a_failing_step_stops_with_step_log_and_resume_command(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(in_tmp)
    broken = FakeSteps(fail="train")
    assert run(cfg, broken, "--set", "training.max_steps=5") == 1
    assert broken.calls == ["data", "train"]
    err = capsys.readouterr().err
    assert "Workflow stopped at step 'train'" in err and "train broke: disk full" in err
    log_path = in_tmp / "logs" / "ollama_equity_research.log"
    assert f"log: {log_path}" in err
    assert (
        f"resume with: python run_complete_finetuning.py --config {cfg} --set training.max_steps=5 --no-progress"
        in (" ".join(err.split()))
    )
    state = read_state(in_tmp)
    assert state["steps"]["data"]["status"] == "done"
    assert state["steps"]["train"]["status"] == "failed"
    assert state["steps"]["train"]["error"] == "EquituneError: train broke: disk full"
    assert [state["steps"][s]["status"] for s in ("export", "evaluate", "report")] == ["pending"] * 3
    assert "train broke" in log_path.read_text(encoding="utf-8")  # with its traceback

    # the resume command: the data step is kept, the failed step resumes
    fixed = FakeSteps()
    assert run(cfg, fixed, "--set", "training.max_steps=5") == 0
    assert fixed.calls == ["train", "export", "evaluate", "report"]
    assert fixed.contexts["train"].resume is True
    assert fixed.contexts["export"].resume is False
    assert read_state(in_tmp)["steps"]["train"]["resumed"] is True


def test_a_second_workflow_in_the_same_folder_is_refused(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(in_tmp)
    steps = FakeSteps()
    with workflow_lock(in_tmp / "finetuning_workflow"):
        assert run(cfg, steps) == 1
    assert steps.calls == []
    assert f"pid {os.getpid()}" in capsys.readouterr().err
    assert run(cfg, steps) == 0  # the lock is released with its holder


def test_unreadable_state_is_an_error_unless_forced(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(in_tmp)
    (in_tmp / "finetuning_workflow").mkdir()
    (in_tmp / "finetuning_workflow" / "state.json").write_text("{half", encoding="utf-8")
    assert run(cfg, FakeSteps()) == 1
    assert "--force" in capsys.readouterr().err
    assert run(cfg, FakeSteps(), "--force") == 0


# ---------------------------------------------------------------------------------------- --validate-only


def test_validate_reports_missing_package_and_unreachable_ollama_with_fixes(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import equitune.pipeline as pipeline

    real = pipeline._has_module
    monkeypatch.setattr(pipeline, "_has_module", lambda name: name != "peft" and real(name))
    cfg = write_config(in_tmp)
    items = {item.name: item for item in validate_setup(load_config(cfg))}

    train = items["packages for train"]
    assert not train.ok and train.blocking and "peft" in train.detail
    assert train.fix is not None and 'pip install "equitune[train]"' in train.fix
    ollama = items["Ollama"]
    assert not ollama.ok and not ollama.blocking and "embedded llama.cpp runtime" in ollama.detail
    assert ollama.fix is not None and "ollama serve" in ollama.fix
    market = items["market data"]
    assert market.ok and market.blocking and "companies from the embedded snapshot" in market.detail
    assert "not used by the workflow" not in market.detail
    assert items["configuration"].ok
    for name in ("disk space", "RAM", "base model", "HF -> GGUF converter", "workflow folder"):
        assert name in items

    assert workflow_main(["--config", str(cfg), "--validate-only"]) == 1
    out = capsys.readouterr().out
    assert "✗ packages for train: missing: peft" in out
    assert 'fix: pip install "equitune[train]"' in out
    assert "✗ Ollama (not blocking)" in out
    assert "Not ready: packages for train" in out
    assert not (in_tmp / "finetuning_workflow" / "state.json").exists()  # nothing ran


def test_validate_checks_the_embedded_snapshot_the_workflow_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    import equitune.market.providers.embedded as embedded
    from equitune.errors import DataError
    from equitune.pipeline import _check_market

    # a configured live provider is neither loaded nor needed: the workflow's steps read the embedded snapshot
    item = _check_market(EquituneConfig.model_validate({"market": {"provider": "yfinance"}}))
    assert item.ok and "companies from the embedded snapshot" in item.detail
    assert "market.provider 'yfinance' is not used by the workflow" in item.detail

    def broken() -> dict[str, Any]:
        raise DataError("snapshot file us.json: duplicate ticker AAPL")

    monkeypatch.setattr(embedded, "load_snapshot", broken)
    item = _check_market(EquituneConfig())
    assert not item.ok and item.blocking and "duplicate ticker" in item.detail and item.fix


def test_validate_with_an_invalid_config_prints_the_checklist_and_exits_1(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(in_tmp, training={"learning_rat": 0.1})
    assert workflow_main(["--config", str(cfg), "--validate-only"]) == 1
    out = capsys.readouterr().out
    assert "✗ configuration" in out and "learning_rat" in out and "fix:" in out


def test_disk_estimate_grows_with_the_model_and_formats() -> None:
    from equitune.pipeline import GB, disk_needed, estimate_parameters

    assert estimate_parameters("llama3.1:8b") == 8e9
    assert estimate_parameters("smollm2:135m") == 135e6
    assert estimate_parameters("Qwen/Qwen2.5-0.5B-Instruct") == 0.5e9
    assert estimate_parameters("some/model") is None
    config = EquituneConfig()
    small = disk_needed(config, 135e6, downloads=False)
    assert 2 * GB < small < 4 * GB
    more = EquituneConfig.model_validate({"export": {"formats": ["f16", "q8_0", "q4_K_M"]}})
    assert disk_needed(more, 8e9, downloads=True) > disk_needed(config, 8e9, downloads=False) > 60 * GB


def test_equitune_run_command(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    import equitune.pipeline as pipeline
    from equitune.cli_workflow import register, run_arguments

    assert run_arguments(config=Path("c.json"), sets=["a.b=1"], from_step="train", no_progress=True) == [
        "--config",
        "c.json",
        "--set",
        "a.b=1",
        "--from-step",
        "train",
        "--no-progress",
    ]
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app)
    monkeypatch.setattr(pipeline, "_has_module", lambda name: False)
    cfg = write_config(in_tmp)
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--validate-only"])
    assert result.exit_code == 1
    assert "✗ packages for train" in result.output
    bad = CliRunner().invoke(app, ["run", "--from-step", "nonsense"])
    assert bad.exit_code == 2 and "nonsense" in bad.output


# ---------------------------------------------------------------------------------------- killed during training


def tiny_data_step(config: EquituneConfig, ctx: StepContext) -> dict[str, Any]:
    """The data step of the kill test: the tiny chat examples of tests/train (the real generator's answers are far
    longer than a tiny model's context)."""
    sys.path.insert(0, str(TESTS_DIR / "train"))
    import tiny

    out = config.paths.training_data
    out.mkdir(parents=True, exist_ok=True)
    tiny.write_jsonl(out / "train.jsonl", tiny.EXAMPLES)
    tiny.write_jsonl(out / "valid.jsonl", tiny.EXAMPLES[:2])
    return {"out_dir": str(out), "files": {"train": str(out / "train.jsonl"), "valid": str(out / "valid.jsonl")}}


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import equitune.train.loop as loop
    from equitune.pipeline import workflow_main
    from test_pipeline import tiny_data_step

    marker = Path(sys.argv[2])
    real_train = loop.train

    def slow_train(*args, **kwargs):
        def on_step(step):
            if step == 3:  # after the checkpoint of step 2: step 3 is done and will be lost
                marker.write_text(str(step))
                time.sleep(600)
        return real_train(*args, on_step=on_step, **kwargs)

    loop.train = slow_train
    sys.exit(workflow_main(["--config", sys.argv[1], "--no-progress"], steps={{"data": tiny_data_step}}))
    """
)


def _fake_export(config: EquituneConfig, ctx: StepContext) -> dict[str, Any]:
    assert Path(ctx.outputs["train"]["adapter_dir"], "adapter_config.json").is_file()
    return {"name_tag": "equity_research_llama:v1", "created_in_ollama": False, "files": {}}


def _fake_evaluate(config: EquituneConfig, ctx: StepContext) -> dict[str, Any]:
    from equitune.report.performance import headline_numbers

    out = config.paths.evaluation_results / "run-1"
    out.mkdir(parents=True, exist_ok=True)
    candidate, base = ctx.outputs["export"]["name_tag"], config.model_selection.base_model
    results = {
        "run": "run-1",
        "prompts": [],
        "outputs": [],
        "models": [
            {"name": candidate, "role": "candidate", "summary": {"mean_score": 61.25, "tier": "Acceptable"}},
            {"name": base, "role": "baseline", "summary": {"mean_score": 50.5, "tier": "Acceptable"}},
        ],
        "comparison": {
            "candidate": candidate,
            "baseline": base,
            "prompts": 6,
            "win_rate": 0.75,
            "wins": 4,
            "losses": 1,
            "ties": 1,
            "mean_delta": 10.75,
            "ci_low": 2.5,
            "ci_high": 19.0,
            "confidence": 0.95,
            "deltas": [],
        },
    }
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return {"out_dir": str(out), "headline": headline_numbers(results), "files": {"results": str(out / "results.json")}}


def test_run_killed_during_training_resumes_from_its_checkpoint(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    sys.path.insert(0, str(TESTS_DIR / "train"))
    import tiny

    from equitune.train.report import read_metrics

    base = tiny.save_tiny(in_tmp / "base")
    training = {
        "backend": "transformers",
        "precision": "fp32",
        "max_steps": 6,
        "save_steps": 2,
        "eval_steps": 2,
        "logging_steps": 1,
        "batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 0.01,
        "warmup_steps": 0,
        "max_seq_length": 128,
        "early_stopping_patience": None,
    }
    cfg = write_config(
        in_tmp,
        model_selection={"base_model": str(base)},
        training=training,
        lora_config={"rank": 4, "alpha": 8, "dropout": 0.0},
    )
    marker = in_tmp / "training-step-3"
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=str(TESTS_DIR)), str(cfg), str(marker)],
        env=env,
        cwd=in_tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the workflow did not reach training step 3:\n{child.communicate()[0][-3000:]}")
            time.sleep(0.2)
        state = read_state(in_tmp)
        assert state["steps"]["data"]["status"] == "done"
        assert state["steps"]["train"]["status"] == "running"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    run_dir = in_tmp / "finetuned_models" / "equity_research_llama"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-2"]
    assert read_state(in_tmp)["steps"]["train"]["status"] == "running"  # killed: no clean-up ran

    calls: list[str] = []

    def data_again(config: EquituneConfig, ctx: StepContext) -> dict[str, Any]:
        calls.append("data")
        return tiny_data_step(config, ctx)

    steps = {"data": data_again, "export": _fake_export, "evaluate": _fake_evaluate}
    capsys.readouterr()
    assert workflow_main(["--config", str(cfg), "--no-progress"], steps=steps) == 0
    out = capsys.readouterr().out

    assert calls == []  # the data step was done and its inputs did not change
    state = read_state(in_tmp)
    train = state["steps"]["train"]
    assert train["status"] == "done" and train["resumed"] is True and train["attempts"] == 2
    assert train["outputs"]["resumed_from"] == "step-2"
    assert train["outputs"]["steps"] == 6
    metrics = read_metrics(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4, 5, 6]  # step 3 redone once, not twice
    assert [m["step"] for m in metrics if "val_loss" in m] == [0, 2, 4, 6]
    assert all(state["steps"][s]["status"] == "done" for s in STEPS)

    report = in_tmp / "finetuning_workflow" / "report.html"
    page = report.read_text(encoding="utf-8")
    assert "Training and validation loss" in page and "<polyline" in page
    assert "61.2" in page and "+10.8" in page
    flat = " ".join(out.split())
    assert f"report: {report}" in flat
    assert "61.2 (Acceptable) vs base" in flat and "mean delta +10.8 points (95% CI +2.5 to +19.0)" in flat
    assert "win rate 75.0%" in flat
    assert "equity_research_llama:v1 (for the embedded llama.cpp runtime)" in flat

    # redoing training on purpose starts afresh: the finished run's checkpoints are cleared first
    assert workflow_main(["--config", str(cfg), "--no-progress", "--from-step", "train"], steps=steps) == 0
    again = read_state(in_tmp)["steps"]["train"]
    assert again["resumed"] is False and again["outputs"]["resumed_from"] is None and again["outputs"]["steps"] == 6
    assert calls == []


def test_the_run_command_offers_every_step() -> None:
    from equitune.cli_workflow import WorkflowStep

    assert tuple(step.value for step in WorkflowStep) == STEPS
