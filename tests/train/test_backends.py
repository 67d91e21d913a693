"""Backend selection, the QLoRA guard and the config translation to Unsloth and mlx-lm."""

from __future__ import annotations

from pathlib import Path

import pytest

from equitune.config import LoraConfig, TrainingConfig
from equitune.errors import EquituneError
from equitune.train.backends import (
    Machine,
    check_qlora,
    mlx_lora_config,
    optimizer_steps,
    select_backend,
    unsloth_arguments,
)

CPU = Machine("cpu", has_unsloth=False, has_mlx=False, has_bitsandbytes=False)
CUDA = Machine("cuda", has_unsloth=True, has_mlx=False, has_bitsandbytes=True)
APPLE = Machine("apple", has_unsloth=False, has_mlx=True, has_bitsandbytes=False)


def test_auto_picks_by_platform() -> None:
    assert select_backend("auto", CPU) == "transformers"
    assert select_backend("auto", CUDA) == "unsloth"
    assert select_backend("auto", APPLE) == "mlx"
    assert select_backend("auto", Machine("cuda", False, False, True)) == "transformers"


@pytest.mark.parametrize(
    ("backend", "machine", "needle"), [("unsloth", CPU, "needs a CUDA GPU"), ("mlx", CUDA, "Apple Silicon")]
)
def test_impossible_backend_names_the_alternatives(backend: str, machine: Machine, needle: str) -> None:
    with pytest.raises(EquituneError, match=needle) as err:
        select_backend(backend, machine)
    assert "transformers" in str(err.value)


def test_qlora_needs_cuda() -> None:
    check_qlora(False, False, CPU)
    check_qlora(True, True, CUDA)
    with pytest.raises(EquituneError, match="needs a CUDA GPU with bitsandbytes") as err:
        check_qlora(True, True, CPU)
    assert "plain LoRA" in str(err.value) and "mlx" in str(err.value)
    with pytest.raises(EquituneError, match="together with --4bit"):
        check_qlora(True, False, CUDA)


def test_optimizer_steps() -> None:
    config = TrainingConfig(batch_size=4, gradient_accumulation_steps=8, num_epochs=3)
    assert optimizer_steps(400, config) == 38  # ceil(400 / 32 * 3) = ceil(37.5)
    assert optimizer_steps(400, config, world_size=2) == 19  # ceil(400 / 64 * 3) = ceil(18.75)
    assert optimizer_steps(400, TrainingConfig(max_steps=7)) == 7


def test_mlx_translation(tmp_path: Path) -> None:
    config = TrainingConfig(batch_size=4, gradient_accumulation_steps=2, max_steps=100, warmup_steps=10)
    lora = LoraConfig(rank=16, alpha=32, dropout=0.1, target_modules=["q_proj", "v_proj", "gate_proj"])
    result = mlx_lora_config(config, lora, "mlx-community/SmolLM2", tmp_path / "data", tmp_path / "adapter", 500)
    assert result["fine_tune_type"] == "lora" and result["iters"] == 100 and result["batch_size"] == 8
    assert result["lora_parameters"] == {
        "keys": ["self_attn.q_proj", "self_attn.v_proj", "mlp.gate_proj"],
        "rank": 16,
        "scale": 2.0,  # PEFT's alpha / r
        "dropout": 0.1,
    }
    assert result["lr_schedule"]["name"] == "cosine_decay" and result["lr_schedule"]["warmup"] == 10
    assert result["lr_schedule"]["arguments"] == [2e-05, 90, 0.0]
    assert result["mask_prompt"] is True  # loss on the assistant turn only, as in the transformers backend
    assert result["optimizer_config"] == {"adamw": {"weight_decay": 0.0}}  # not mlx's default of 0.01
    assert (result["test"], result["test_batches"]) == (True, -1)  # the final adapter's loss on test = valid
    assert "resume_adapter_file" not in result
    resumed = mlx_lora_config(config, lora, "m", tmp_path, tmp_path, 500, resume_adapter_file=tmp_path / "a.st")
    assert resumed["resume_adapter_file"] == str(tmp_path / "a.st")


def test_unsloth_translation() -> None:
    load, peft = unsloth_arguments(
        TrainingConfig(max_seq_length=1024, gradient_checkpointing=True), LoraConfig(), "unsloth/llama-3.1-8b", True
    )
    assert load == {"model_name": "unsloth/llama-3.1-8b", "max_seq_length": 1024, "dtype": None, "load_in_4bit": True}
    assert peft["r"] == 16 and peft["lora_alpha"] == 32 and peft["use_gradient_checkpointing"] == "unsloth"
    assert peft["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_transformers_run_says_which_backend_trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import run_setup

    from equitune.train import backends
    from equitune.train.pipeline import run_training

    monkeypatch.setattr(backends, "detect_machine", lambda: Machine("cuda", False, False, True))  # no unsloth
    base, data = run_setup.make_setup(tmp_path)
    result = run_training(
        run_setup.make_config(tmp_path, "auto", max_steps=1), base_model=str(base), data_dir=data, progress=False
    )
    report = json.loads(result.report_path.read_text())
    assert report["backend"] == "transformers" and report["steps"] == 1
    assert "loop_settings" not in report and "quantization" not in report
