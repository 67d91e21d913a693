"""The MLX backend without Apple Silicon: mlx-lm's output parsed, the adapter converted to PEFT exactly, and a whole
run orchestrated against a stand-in ``mlx_lm`` package that a real subprocess runs (it reads the config and data
equitune wrote, prints mlx-lm's progress lines and saves an adapter in mlx-lm's layout)."""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import run_setup  # noqa: E402
import tiny  # noqa: E402

from equitune.config import LoraConfig  # noqa: E402
from equitune.errors import DataError, EquituneError  # noqa: E402
from equitune.train import backends  # noqa: E402
from equitune.train.mlx_backend import (  # noqa: E402
    MlxMetrics,
    check_mlx_batches,
    mlx_command,
    mlx_to_peft,
    parse_mlx_line,
    peft_to_mlx,
    read_safetensors,
    run_command,
    write_mlx_data,
    write_peft_adapter,
    write_safetensors,
)
from equitune.train.pipeline import run_training  # noqa: E402

# ------------------------------------------------------------------------------------------- output lines

# as printed by mlx_lm/tuner/trainer.py and mlx_lm/lora.py
TRAIN_LINE = (
    "Iter 10: Train loss 1.234, Learning Rate 2.000e-05, It/sec 2.105, Tokens/sec 903.512, "
    "Trained Tokens 4520, Peak mem 1.234 GB"
)


def test_parse_mlx_lines() -> None:
    assert parse_mlx_line(TRAIN_LINE) == {
        "kind": "train",
        "iter": 10,
        "loss": 1.234,
        "lr": 2e-05,
        "tokens_per_s": 903.512,
        "trained_tokens": 4520,
    }
    assert parse_mlx_line("Iter 1: Val loss 2.345, Val took 0.512s") == {"kind": "val", "iter": 1, "val_loss": 2.345}
    assert parse_mlx_line("Test loss 1.100, Test ppl 3.004.") == {"kind": "test", "val_loss": 1.1}
    diverged = parse_mlx_line("Iter 3: Train loss nan, Learning Rate 1.000e-02")
    assert diverged is not None and math.isnan(diverged["loss"])
    for other in (
        "Loading pretrained model",
        "Iter 100: Saved adapter weights to a/adapters.safetensors and a/0000100_adapters.safetensors.",
        "Trainable parameters: 0.082% (0.106M/135.000M)",
        "Calculating loss...: 100%|##########| 1/1 [00:00<00:00, 12.1it/s]",
    ):
        assert parse_mlx_line(other) is None


def test_metrics_put_validation_before_the_update_of_its_iteration() -> None:
    metrics = MlxMetrics(global_batch=2, num_train=8)
    lines = [
        "Iter 1: Val loss 3.000, Val took 0.1s",
        "Iter 1: Train loss 2.900, Learning Rate 1.000e-02, It/sec 1.0, Tokens/sec 10.0, Trained Tokens 10, Peak mem 0",
        "Iter 2: Val loss 2.500, Val took 0.1s",
        "Iter 2: Train loss 2.400, Learning Rate 1.000e-02, It/sec 1.0, Tokens/sec 10.0, Trained Tokens 20, Peak mem 0",
        "Test loss 2.000, Test ppl 7.389.",
    ]
    out = [metrics.add(report) for line in lines if (report := parse_mlx_line(line)) is not None]
    assert [(m["step"], "val_loss" in m) for m in out] == [(0, True), (1, False), (1, True), (2, False), (2, True)]
    assert out[3] == {"step": 2, "epoch": 0.5, "loss": 2.4, "lr": 0.01, "label_tokens": 20, "tokens_per_s": 10.0}
    assert metrics.val_losses() == [(0, 3.0), (1, 2.5), (2, 2.0)]
    assert metrics.train_losses() == [2.9, 2.4]


# ------------------------------------------------------------------------------------------- conversion


def _mlx_adapter(rng: np.random.Generator, shapes: dict[str, tuple[int, int]], rank: int) -> dict[str, np.ndarray]:
    tensors = {}
    for module, (fan_in, fan_out) in shapes.items():
        tensors[f"{module}.lora_a"] = rng.normal(size=(fan_in, rank))
        tensors[f"{module}.lora_b"] = rng.normal(size=(rank, fan_out))
    return tensors


@pytest.mark.parametrize(("scale", "alpha", "rank"), [(2.0, 8.0, 4), (3.0, 8.0, 4), (20.0, 16.0, 8)])
def test_converted_adapter_gives_the_same_delta_w(scale: float, alpha: float, rank: int) -> None:
    rng = np.random.default_rng(0)
    shapes = {"model.layers.0.self_attn.q_proj": (12, 12), "model.layers.3.mlp.down_proj": (20, 12)}
    mlx = _mlx_adapter(rng, shapes, rank)
    peft = mlx_to_peft(mlx, scale, alpha)
    assert sorted(peft) == [
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        "base_model.model.model.layers.3.mlp.down_proj.lora_A.weight",
        "base_model.model.model.layers.3.mlp.down_proj.lora_B.weight",
    ]
    for module, (fan_in, fan_out) in shapes.items():
        a, b = mlx[f"{module}.lora_a"], mlx[f"{module}.lora_b"]
        lora_a, lora_b = (
            peft[f"base_model.model.{module}.lora_A.weight"],
            peft[f"base_model.model.{module}.lora_B.weight"],
        )
        assert lora_a.shape == (rank, fan_in) and lora_b.shape == (fan_out, rank)
        delta_mlx = scale * b.T @ a.T  # mlx-lm's LoRALinear.fuse
        delta_peft = (alpha / rank) * lora_b @ lora_a  # PEFT's merge: scaling * B @ A
        np.testing.assert_allclose(delta_peft, delta_mlx, rtol=1e-12, atol=1e-12)
        if scale == alpha / rank:  # nothing to fold: a pure re-layout, bit for bit
            assert np.array_equal(lora_b, b.T) and np.array_equal(lora_a, a.T)
    back = peft_to_mlx(peft, scale, alpha)
    assert back.keys() == mlx.keys()
    for key in mlx:
        np.testing.assert_allclose(back[key], mlx[key], rtol=1e-12)


def test_peft_loads_the_converted_adapter_and_adds_the_mlx_update(tmp_path: Path) -> None:
    import torch
    from peft import PeftModel

    tokenizer = tiny.make_tokenizer()
    base = tiny.make_model(len(tokenizer))
    rng = np.random.default_rng(1)
    shapes = {}
    for layer in range(2):
        shapes[f"model.layers.{layer}.self_attn.q_proj"] = (64, 64)
        shapes[f"model.layers.{layer}.self_attn.v_proj"] = (64, 32)  # 2 key-value heads of 16
    mlx = {k: v.astype(np.float32) for k, v in _mlx_adapter(rng, shapes, 4).items()}
    scale, lora = 3.0, LoraConfig(rank=4, alpha=8, dropout=0.1, target_modules=["q_proj", "v_proj"])
    write_peft_adapter(tmp_path, mlx_to_peft(mlx, scale, lora.alpha), lora, "tiny-base")

    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (saved["r"], saved["lora_alpha"], saved["peft_type"], saved["task_type"]) == (4, 8, "LORA", "CAUSAL_LM")
    assert sorted(saved["target_modules"]) == ["q_proj", "v_proj"] and saved["base_model_name_or_path"] == "tiny-base"
    model = PeftModel.from_pretrained(base, str(tmp_path)).eval()
    x = torch.randn(3, 64)
    for module in shapes:
        layer = model.get_submodule(f"base_model.model.{module}")
        with torch.no_grad():
            update = (layer(x) - layer.base_layer(x)).numpy()
        expected = scale * (x.numpy() @ mlx[f"{module}.lora_a"]) @ mlx[f"{module}.lora_b"]
        np.testing.assert_allclose(update, expected, rtol=1e-4, atol=1e-5)


def test_only_plain_lora_adapters_convert() -> None:
    a, b = np.zeros((4, 2)), np.zeros((2, 4))
    with pytest.raises(EquituneError, match="DoRA"):
        mlx_to_peft({"l.q_proj.lora_a": a, "l.q_proj.lora_b": b, "l.q_proj.m": np.zeros(4)}, 2.0, 4.0)
    with pytest.raises(EquituneError, match="pairs"):
        mlx_to_peft({"l.q_proj.lora_a": a}, 2.0, 4.0)
    with pytest.raises(EquituneError, match="mixes LoRA ranks"):
        mlx_to_peft({"x.lora_a": a, "x.lora_b": b, "y.lora_a": np.zeros((4, 3)), "y.lora_b": np.zeros((3, 4))}, 2, 4)
    with pytest.raises(EquituneError, match="not \\(in, r\\)"):
        mlx_to_peft({"x.lora_a": a, "x.lora_b": np.zeros((3, 4))}, 2.0, 4.0)


def test_safetensors_round_trip_keeps_values(tmp_path: Path) -> None:
    tensors = {"x.lora_a": np.arange(6, dtype=np.float32).reshape(3, 2)}
    write_safetensors(tmp_path / "a.safetensors", tensors)
    assert np.array_equal(read_safetensors(tmp_path / "a.safetensors")["x.lora_a"], tensors["x.lora_a"])


# ------------------------------------------------------------------------------------------- data and command


@pytest.mark.parametrize("fmt", ["messages", "alpaca"])
def test_data_is_written_as_chat_messages(tmp_path: Path, fmt: str) -> None:
    train = tiny.write_jsonl(tmp_path / "train.jsonl", tiny.EXAMPLES, fmt=fmt)
    valid = tiny.write_jsonl(tmp_path / "valid.jsonl", tiny.EXAMPLES[:2], fmt=fmt)
    assert write_mlx_data(train, valid, tmp_path / "mlx") == (6, 2)
    records = [json.loads(line) for line in (tmp_path / "mlx" / "train.jsonl").read_text().splitlines()]
    assert records[0] == {
        "messages": [
            {"role": "system", "content": tiny.SYSTEM},
            {"role": "user", "content": tiny.EXAMPLES[0][0]},
            {"role": "assistant", "content": tiny.EXAMPLES[0][1]},
        ]
    }
    assert len(records) == 6
    assert (tmp_path / "mlx" / "test.jsonl").read_text() == (tmp_path / "mlx" / "valid.jsonl").read_text()
    assert len((tmp_path / "mlx" / "valid.jsonl").read_text().splitlines()) == 2


def test_data_needs_validation_and_full_batches(tmp_path: Path) -> None:
    train = tiny.write_jsonl(tmp_path / "train.jsonl", tiny.EXAMPLES)
    with pytest.raises(DataError, match="needs validation data"):
        write_mlx_data(train, tmp_path / "absent.jsonl", tmp_path / "mlx")
    check_mlx_batches(2, 6, 2)
    with pytest.raises(EquituneError, match=r"batches of 4 .* valid \(2\); lower training.batch_size"):
        check_mlx_batches(4, 6, 2)


def test_command_uses_the_package_entry_point_when_there_is_one(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    assert mlx_command("py", config, package_cli=True) == ["py", "-m", "mlx_lm", "lora", "--config", str(config)]
    assert mlx_command("py", config, package_cli=False) == ["py", "-m", "mlx_lm.lora", "--config", str(config)]


def test_run_command_streams_lines_and_reports_failures() -> None:
    seen: list[str] = []
    script = "import sys; print('Iter 1: Val loss 2.000, Val took 0.1s'); print('a\\rb', flush=True)"
    run_command([sys.executable, "-c", script], seen.append)
    assert seen == ["Iter 1: Val loss 2.000, Val took 0.1s", "a", "b"]
    failing = "import sys; print('loading'); sys.stderr.write('ValueError: no such model\\n'); sys.exit(3)"
    with pytest.raises(EquituneError, match="status 3(.|\n)*ValueError: no such model"):
        run_command([sys.executable, "-c", failing], seen.append)


# ------------------------------------------------------------------------------------------- a whole run

FAKE_LORA = '''
"""Stands in for mlx_lm.lora: checks what equitune wrote, prints mlx-lm's lines, saves an mlx-lm adapter."""
import argparse, json, math, os, sys
from pathlib import Path

import numpy as np
import yaml
from safetensors.numpy import load_file, save_file


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config")
    cfg = yaml.safe_load(open(parser.parse_args().config))
    if os.environ.get("FAKE_MLX_FAIL"):
        print("Loading pretrained model", flush=True)
        sys.stderr.write("ValueError: Model type tiny not supported.\\n")
        sys.exit(1)
    for split in ("train", "valid", "test"):
        assert (Path(cfg["data"]) / f"{split}.jsonl").is_file(), split
    model = json.loads((Path(cfg["model"]) / "config.json").read_text())
    hidden, heads, kv = model["hidden_size"], model["num_attention_heads"], model["num_key_value_heads"]
    kv_dim = kv * hidden // heads
    dims = {"self_attn.q_proj": (hidden, hidden), "self_attn.k_proj": (hidden, kv_dim),
            "self_attn.v_proj": (hidden, kv_dim), "self_attn.o_proj": (hidden, hidden)}
    rank = cfg["lora_parameters"]["rank"]
    rng = np.random.default_rng(cfg["seed"])
    tensors = load_file(cfg["resume_adapter_file"]) if cfg.get("resume_adapter_file") else {}
    for layer in range(model["num_hidden_layers"]):
        for key in cfg["lora_parameters"]["keys"]:
            fan_in, fan_out = dims[key]
            name = f"model.layers.{layer}.{key}"
            tensors.setdefault(name + ".lora_a", rng.uniform(-0.1, 0.1, (fan_in, rank)).astype(np.float32))
            tensors.setdefault(name + ".lora_b", rng.normal(0, 0.01, (rank, fan_out)).astype(np.float32))
    loss, iters = 3.0, cfg["iters"]
    print(f"Starting training..., iters: {iters}", flush=True)
    for it in range(1, iters + 1):
        if it == 1 or it % cfg["steps_per_eval"] == 0 or it == iters:
            print(f"Iter {it}: Val loss {loss + 0.1:.3f}, Val took 0.010s", flush=True)
        loss *= 0.8
        if it % cfg["steps_per_report"] == 0 or it == iters:
            print(f"Iter {it}: Train loss {loss:.3f}, Learning Rate {cfg['learning_rate']:.3e}, It/sec 9.000, "
                  f"Tokens/sec 900.000, Trained Tokens {it * 50}, Peak mem 0.100 GB", flush=True)
    adapters = Path(cfg["adapter_path"])
    adapters.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(adapters / "adapters.safetensors"))
    (adapters / "adapter_config.json").write_text(json.dumps(cfg))
    print(f"Saved final weights to {adapters / 'adapters.safetensors'}.", flush=True)
    print("Testing", flush=True)
    print(f"Test loss {loss:.3f}, Test ppl {math.exp(loss):.3f}.", flush=True)
'''

FAKE_MAIN = """
import sys
from mlx_lm import lora

if sys.argv.pop(1) != "lora":
    raise SystemExit("this stand-in only knows lora")
lora.main()
"""


@pytest.fixture
def fake_mlx_lm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``mlx_lm`` package with ``python -m mlx_lm lora``, importable here and in subprocesses."""
    root = tmp_path / "fake_site"
    package = root / "mlx_lm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(textwrap.dedent(FAKE_MAIN))
    (package / "lora.py").write_text(textwrap.dedent(FAKE_LORA))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setattr(backends, "detect_machine", lambda: run_setup.APPLE)
    return root


def _run(tmp_path: Path, **options: Any) -> Any:
    base, data = tmp_path / "base", tmp_path / "td"
    config = run_setup.make_config(tmp_path, "auto")  # auto on Apple Silicon with mlx-lm installed: mlx
    return run_training(config, base_model=str(base), data_dir=data, name="m", progress=False, **options)


def test_mlx_run_leaves_the_same_files_as_the_other_backends(tmp_path: Path, fake_mlx_lm: Path) -> None:
    from peft import PeftModel

    base, _ = run_setup.make_setup(tmp_path)
    result = _run(tmp_path)
    run = tmp_path / "finetuned_models" / "m"

    # what mlx-lm was given
    settings = yaml.safe_load((run / "mlx" / "lora_config.yaml").read_text())
    assert settings["model"] == str(base.resolve()) and settings["data"] == str(run / "mlx" / "data")
    assert (settings["iters"], settings["batch_size"], settings["steps_per_eval"]) == (4, 2, 2)
    assert settings["mask_prompt"] is True and settings["test"] is True and settings["test_batches"] == -1
    assert settings["lora_parameters"]["scale"] == 2.0  # alpha 32 / rank 16
    assert settings["lora_parameters"]["keys"] == [f"self_attn.{m}" for m in ("q_proj", "k_proj", "v_proj", "o_proj")]
    assert settings["optimizer_config"] == {"adamw": {"weight_decay": 0.0}}
    assert len((run / "mlx" / "data" / "train.jsonl").read_text().splitlines()) == 6

    # what it reported, in equitune's files
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "val_loss" in m] == [0, 1, 3, 4]  # Iter 1, 2, 4 and the final test
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4]
    assert metrics[-1] == {"step": 4, "epoch": 1.3333, "val_loss": 1.229}
    report = json.loads((run / "training_report.json").read_text())
    assert report["backend"] == "mlx" and report["steps"] == 4 and report["tokens"] == 200
    assert (report["val_loss_before"], report["val_loss_after"]) == (3.1, 1.229)
    assert (report["train_loss_first"], report["train_loss_last"]) == (2.4, 1.229)
    assert report["best_val_loss"] == 1.229 and report["best_step"] == 4
    assert (run / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run / "config.json").read_text())["training"]["backend"] == "auto"
    assert (result.steps, result.val_loss_after, result.adapter_dir) == (4, 1.229, run / "adapter")

    # the adapter, converted: same update as mlx-lm's, loadable by PEFT with the tokenizer beside it
    mlx = read_safetensors(run / "mlx" / "adapters" / "adapters.safetensors")
    peft = read_safetensors(run / "adapter" / "adapter_model.safetensors")
    assert len(peft) == len(mlx) == 2 * 4 * 2
    for key, a in mlx.items():
        if key.endswith(".lora_a"):
            module = key[: -len(".lora_a")]
            b = mlx[f"{module}.lora_b"]
            lora_a = peft[f"base_model.model.{module}.lora_A.weight"]
            lora_b = peft[f"base_model.model.{module}.lora_B.weight"]
            np.testing.assert_array_equal((32 / 16) * lora_b @ lora_a, 2.0 * b.T @ a.T)
    assert json.loads((run / "adapter" / "equitune_adapter.json").read_text())["step"] == 4
    loaded_model, tokenizer = tiny.load_tiny(base)
    model = PeftModel.from_pretrained(loaded_model, str(run / "adapter"))
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) == report["trainable_parameters"]
    assert (run / "adapter" / "tokenizer.json").is_file()


def test_mlx_run_continues_from_a_finished_adapter(tmp_path: Path, fake_mlx_lm: Path) -> None:
    run_setup.make_setup(tmp_path)
    _run(tmp_path)
    _run(tmp_path, continue_training=True)
    first, second = tmp_path / "finetuned_models" / "m", tmp_path / "finetuned_models" / "m-v2"
    settings = yaml.safe_load((second / "mlx" / "lora_config.yaml").read_text())
    assert settings["resume_adapter_file"] == str(second / "mlx" / "init_adapters.safetensors")
    # the stand-in keeps the weights it resumes from, so the round trip PEFT -> mlx-lm -> PEFT shows
    before = read_safetensors(first / "adapter" / "adapter_model.safetensors")
    after = read_safetensors(second / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    assert json.loads((second / "training_report.json").read_text())["init_adapter"] == str(first / "adapter")


def test_mlx_failure_and_resume_are_clear_errors(
    tmp_path: Path, fake_mlx_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_setup.make_setup(tmp_path)
    with pytest.raises(EquituneError, match="cannot resume a killed run"):
        _run(tmp_path, resume=True)
    monkeypatch.setenv("FAKE_MLX_FAIL", "1")
    with pytest.raises(EquituneError, match="status 1(.|\n)*Model type tiny not supported"):
        _run(tmp_path)
