"""`equitune train` end to end on a tiny model: the stage's wiring, outputs and errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

from equitune.cli import main  # noqa: E402

FAST = [
    "--set",
    "training.batch_size=2",
    "--set",
    "training.gradient_accumulation_steps=1",
    "--set",
    "training.warmup_steps=0",
    "--set",
    "training.eval_steps=2",
    "--set",
    "training.save_steps=2",
    "--set",
    "training.learning_rate=0.01",
    "--set",
    "training.max_seq_length=128",
    "--set",
    "training.precision=fp32",
]


@pytest.fixture
def setup(in_tmp: Path) -> Path:
    tiny.save_tiny(in_tmp / "base")
    data = in_tmp / "td"
    data.mkdir()
    tiny.write_jsonl(data / "train.jsonl", tiny.EXAMPLES)
    tiny.write_jsonl(data / "valid.jsonl", tiny.EXAMPLES[:2])
    return in_tmp


def test_train_writes_the_run_folder(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["train", "--base-model", str(setup / "base"), "--data", "td", "--name", "t", "--max-steps", "4", *FAST]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    run = setup / "finetuned_models" / "t"
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((run / "config.json").read_text())["training"]["max_steps"] == 4
    report = json.loads((run / "training_report.json").read_text())
    assert report["steps"] == 4 and report["base_model"] == str(setup / "base")
    assert report["val_loss_after"] < report["val_loss_before"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) >= 4
    assert "Trained 4 steps" in out

    # continue training on new data starts from the finished adapter
    tiny.write_jsonl(setup / "new.jsonl", tiny.EXAMPLES[2:])
    code = main(
        [
            "train",
            "--base-model",
            str(setup / "base"),
            "--data",
            "td",
            "--name",
            "t",
            "--max-steps",
            "2",
            "--continue-training",
            "--new-data",
            "new.jsonl",
            *FAST,
        ]
    )
    assert code == 0
    continued = json.loads((setup / "finetuned_models" / "t-v2" / "training_report.json").read_text())
    assert continued["steps"] == 2
    assert (run / "adapter" / "adapter_model.safetensors").is_file()  # the finished run is kept


def test_train_errors_are_clear(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--base-model", str(setup / "base"), "--data", "missing", *FAST])
    assert code == 1 and "no training data" in capsys.readouterr().err
    code = main(["train", "--base-model", str(setup / "base"), "--data", "td", "--use-qlora", "--4bit", *FAST])
    assert code == 1 and "needs a CUDA GPU" in capsys.readouterr().err
    code = main(["train", "--base-model", str(setup / "base"), "--data", "td", "--continue-training", *FAST])
    assert code == 1 and "needs a finished adapter" in capsys.readouterr().err
    code = main(["train", "--base-model", "no-such-model:1b", "--data", "td", *FAST])
    assert code == 1 and "Cannot resolve base model 'no-such-model:1b'" in capsys.readouterr().err
