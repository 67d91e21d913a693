"""A run killed (SIGKILL, in a subprocess) after a checkpoint and resumed ends exactly where an uninterrupted run
ends: same losses at every step, same validation losses, same adapter weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

from equitune.config import LoraConfig, TrainingConfig  # noqa: E402
from equitune.train.dataset import load_dataset  # noqa: E402
from equitune.train.loop import train  # noqa: E402
from equitune.train.report import read_metrics  # noqa: E402

CONFIG = dict(
    learning_rate=1e-2,
    batch_size=2,
    gradient_accumulation_steps=2,
    max_steps=10,
    warmup_steps=2,
    eval_steps=3,
    save_steps=4,
    seed=11,
    early_stopping_patience=None,
    lr_scheduler="cosine",
)
LORA = dict(rank=4, alpha=8, dropout=0.1)  # dropout on: the RNG state must be restored too
KILL_AT = 6  # checkpoints at 4 and 8: steps 5-6 are done, then lost

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {here!r})
    import tiny
    from equitune.config import LoraConfig, TrainingConfig
    from equitune.train.dataset import load_dataset
    from equitune.train.loop import train

    base, data, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    model, tok = tiny.load_tiny(base)
    train_set, valid_set = load_dataset(data / "train.jsonl", tok, 256), load_dataset(data / "valid.jsonl", tok, 256)

    def kill(step):
        if step == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)

    train(model, tok, train_set, valid_set, TrainingConfig(**{config!r}), LoraConfig(**{lora!r}), out,
          progress=False, on_step=kill)
    """
)


def _run(base: Path, data: Path, out: Path, resume: bool = False):  # type: ignore[no-untyped-def]
    model, tok = tiny.load_tiny(base)
    train_set, valid_set = load_dataset(data / "train.jsonl", tok, 256), load_dataset(data / "valid.jsonl", tok, 256)
    return train(
        model,
        tok,
        train_set,
        valid_set,
        TrainingConfig(**CONFIG),
        LoraConfig(**LORA),
        out,  # type: ignore[arg-type]
        progress=False,
        resume=resume,
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    base = tiny.save_tiny(tmp_path / "base")
    data = tmp_path / "data"
    data.mkdir()
    tiny.write_jsonl(data / "train.jsonl", tiny.EXAMPLES * 2)
    tiny.write_jsonl(data / "valid.jsonl", tiny.EXAMPLES[:2])
    return base, data


def test_killed_run_resumes_to_the_same_result(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    base, data = setup
    straight = _run(base, data, tmp_path / "straight")

    killed_out = tmp_path / "killed"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(here=str(Path(__file__).parent), kill_at=KILL_AT, config=CONFIG, lora=LORA))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    child = subprocess.run(
        [sys.executable, str(script), str(base), str(data), str(killed_out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -9, child.stderr[-2000:]  # really killed, no clean-up ran
    ckpts = sorted(p.name for p in (killed_out / "checkpoints").iterdir())
    assert ckpts == ["step-4"], ckpts  # no half-written step folder either
    lost = read_metrics(killed_out / "metrics.jsonl")
    assert max(m["step"] for m in lost) == KILL_AT  # steps 5-6 were logged, then lost with the process

    resumed = _run(base, data, killed_out, resume=True)

    assert resumed.steps == straight.steps == 10
    assert resumed.train_loss_last == pytest.approx(straight.train_loss_last, rel=1e-6, abs=1e-7)
    assert resumed.best_val_loss == pytest.approx(straight.best_val_loss, rel=1e-6)
    assert resumed.val_loss_before == pytest.approx(straight.val_loss_before, rel=1e-6)
    assert resumed.tokens == straight.tokens and resumed.label_tokens == straight.label_tokens
    a, b = read_metrics(straight.metrics_path), read_metrics(resumed.metrics_path)
    assert [m["step"] for m in a] == [m["step"] for m in b]  # the lost lines were replaced, not duplicated
    for x, y in zip(a, b, strict=True):
        for key in ("loss", "val_loss", "lr", "tokens", "epoch"):
            if key in x:
                assert y[key] == pytest.approx(x[key], rel=1e-6, abs=1e-7), (x["step"], key)
    for name in ("checkpoints/step-10/adapter", "adapter"):
        w1 = load_file(straight.out_dir / name / "adapter_model.safetensors")
        w2 = load_file(resumed.out_dir / name / "adapter_model.safetensors")
        assert w1.keys() == w2.keys()
        for key in w1:
            assert torch.allclose(w1[key], w2[key], rtol=1e-5, atol=1e-7), (name, key)
    report = json.loads(resumed.report_path.read_text())
    assert report["steps"] == 10 and report["best_step"] == straight.best_step
