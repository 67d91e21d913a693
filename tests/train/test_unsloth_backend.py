"""The Unsloth backend without a GPU: a stand-in ``unsloth`` module (its two entry points, built on transformers
and PEFT) checks what equitune passes to ``FastLanguageModel``, and equitune's loop trains the model it returns on
the CPU. A run with the real Unsloth is the ``gpu`` test."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import run_setup  # noqa: E402
import tiny  # noqa: E402
import tiny_gguf  # noqa: E402

from equitune.errors import EquituneError  # noqa: E402
from equitune.train import backends, loop  # noqa: E402
from equitune.train.pipeline import run_training  # noqa: E402
from equitune.train.unsloth_backend import unsloth_training_config  # noqa: E402


class FakeUnsloth:
    """``unsloth.FastLanguageModel``'s two calls: load a Hugging Face folder, add PEFT LoRA adapters."""

    def __init__(self) -> None:
        self.loads: list[dict[str, Any]] = []
        self.wraps: list[tuple[Any, dict[str, Any]]] = []
        self.wrapped: list[Any] = []

    def from_pretrained(self, **kwargs: Any) -> tuple[Any, Any]:
        self.loads.append(kwargs)
        return tiny.load_tiny(Path(kwargs["model_name"]))

    def get_peft_model(self, model: Any, **kwargs: Any) -> Any:
        from peft import LoraConfig, get_peft_model

        self.wraps.append((model, kwargs))
        config = LoraConfig(
            r=kwargs["r"],
            lora_alpha=kwargs["lora_alpha"],
            lora_dropout=kwargs["lora_dropout"],
            target_modules=kwargs["target_modules"],
            bias=kwargs["bias"],
            task_type="CAUSAL_LM",
        )
        wrapped = get_peft_model(model, config)
        self.wrapped.append(wrapped)
        return wrapped


@pytest.fixture
def fake_unsloth(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeUnsloth:
    fake = FakeUnsloth()
    module = types.ModuleType("unsloth")
    module.FastLanguageModel = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "unsloth", module)
    monkeypatch.setattr(backends, "detect_machine", lambda: run_setup.CUDA)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return fake


def _adapter_keys(adapter: Path) -> list[str]:
    from safetensors.numpy import load_file

    return sorted(load_file(str(adapter / "adapter_model.safetensors")))


@pytest.mark.parametrize("four_bit", [False, True])
def test_unsloth_loads_and_wraps_and_the_loop_trains(tmp_path: Path, fake_unsloth: FakeUnsloth, four_bit: bool) -> None:
    import torch

    base, data = run_setup.make_setup(tmp_path)
    config = run_setup.make_config(tmp_path, "unsloth", gradient_checkpointing=True, seed=7)
    original_wrap = loop.wrap_lora
    result = run_training(
        config, base_model=str(base), data_dir=data, name="u", use_qlora=four_bit, four_bit=four_bit, progress=False
    )

    assert fake_unsloth.loads == [
        {"model_name": str(base.resolve()), "max_seq_length": 128, "dtype": None, "load_in_4bit": four_bit}
    ]
    [(model_given, peft_kwargs)] = fake_unsloth.wraps
    assert peft_kwargs == {
        "r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.1,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "bias": "none",
        "use_gradient_checkpointing": "unsloth",
        "random_state": 7,
    }
    assert loop.wrap_lora is original_wrap  # the pass-through is undone after the run

    # the adapters Unsloth added are the ones trained and saved: one LoRA pair per target, not wrapped twice
    [wrapped] = fake_unsloth.wrapped
    keys = _adapter_keys(result.adapter_dir)
    assert len(keys) == 2 * 4 * 2 and all(k.startswith("base_model.model.model.layers.") for k in keys)
    lora_b = wrapped.get_submodule("base_model.model.model.layers.0.self_attn.q_proj").lora_B["default"].weight
    assert torch.count_nonzero(lora_b) > 0  # zero-initialised, so the loop trained this very model

    run = tmp_path / "finetuned_models" / "u"
    for name in ("config.json", "metrics.jsonl", "loss_curve.png", "train_config.json"):
        assert (run / name).is_file(), name
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "adapter" / "tokenizer.json").is_file()
    report = json.loads((run / "training_report.json").read_text())
    assert report["backend"] == "unsloth" and report["steps"] == 4
    assert report["unsloth"]["from_pretrained"]["load_in_4bit"] is four_bit
    # precision was fp32 already; Unsloth brings its own kernels, so the loop compiles nothing
    assert report["loop_settings"] == {"gradient_checkpointing": False, "compile": "never"}
    assert result.val_loss_before is not None and result.val_loss_after is not None
    assert result.val_loss_after < result.val_loss_before
    trained = json.loads((run / "train_config.json").read_text())["training"]
    assert trained["gradient_checkpointing"] is False  # Unsloth checkpoints itself; the loop does not


def test_unsloth_gets_a_folder_for_a_gguf_base(tmp_path: Path, fake_unsloth: FakeUnsloth) -> None:
    _, data = run_setup.make_setup(tmp_path)
    gguf = tmp_path / "tiny.gguf"
    tiny_gguf.write_tiny_gguf(gguf)
    config = run_setup.make_config(tmp_path, "unsloth", max_steps=1)
    result = run_training(config, base_model=str(gguf), data_dir=data, name="g", progress=False)
    folder = Path(fake_unsloth.loads[0]["model_name"])
    assert folder.parent == tmp_path / "xdg" / "equitune" / "base_models"
    assert (folder / "model.safetensors").is_file() and (folder / "equitune_source.json").is_file()
    saved = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(gguf.resolve())  # the GGUF, not the cache folder


def test_unsloth_continues_from_a_finished_adapter(tmp_path: Path, fake_unsloth: FakeUnsloth) -> None:
    base, data = run_setup.make_setup(tmp_path)
    config = run_setup.make_config(tmp_path, "unsloth", max_steps=2)
    first = run_training(config, base_model=str(base), data_dir=data, name="c", progress=False)
    second = run_training(config, base_model=str(base), data_dir=data, name="c", continue_training=True, progress=False)
    assert len(fake_unsloth.loads) == 2 and len(fake_unsloth.wraps) == 1  # the loop loads the finished adapters
    assert second.out_dir.name == "c-v2" and _adapter_keys(second.adapter_dir) == _adapter_keys(first.adapter_dir)
    report = json.loads(second.report_path.read_text())
    assert report["init_adapter"] == str(first.adapter_dir) and report["backend"] == "unsloth"


def test_loop_settings_for_unsloth_models() -> None:
    from equitune.config import TrainingConfig

    config = TrainingConfig(precision="bf16", gradient_checkpointing=True)
    assert unsloth_training_config(config, wrapped=True).model_dump() == {
        **config.model_dump(),
        "precision": "fp32",
        "compile": "never",
        "gradient_checkpointing": False,
    }
    assert unsloth_training_config(config, wrapped=False).gradient_checkpointing is True


def test_unsloth_is_single_process(tmp_path: Path, fake_unsloth: FakeUnsloth) -> None:
    from equitune.train.distributed import World

    base, data = run_setup.make_setup(tmp_path)
    world = World(rank=0, size=2, all_reduce=lambda t: None, barrier=lambda: None)
    with pytest.raises(EquituneError, match="transformers backend only, not unsloth"):
        run_training(run_setup.make_config(tmp_path, "unsloth"), base_model=str(base), data_dir=data, world=world)
    assert not fake_unsloth.loads


@pytest.mark.gpu
def test_real_unsloth_trains_the_tiny_model(tmp_path: Path) -> None:
    pytest.importorskip("unsloth")
    base, data = run_setup.make_setup(tmp_path)
    result = run_training(
        run_setup.make_config(tmp_path, "unsloth", max_steps=6), base_model=str(base), data_dir=data, name="r"
    )
    assert json.loads(result.report_path.read_text())["backend"] == "unsloth"
    assert result.val_loss_after is not None and result.val_loss_before is not None
    assert result.val_loss_after < result.val_loss_before
