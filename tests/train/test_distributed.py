"""Data-parallel training: 2 gloo processes on CPU (through the real torchrun launcher, via `equitune train
--distributed --gpus 2`) equal one process with the same global batch: batch_size 2 x 2 ranks vs 4 x 1.

Tolerance: per-step training and validation losses within rel 1e-5; adapter weights within 5e-5 per element and
2e-5 relative (Frobenius) per tensor. Only float summation order differs (each rank sums its rows, then the ranks'
sums are added); AdamW divides by the gradient's running RMS, which lifts that rounding to ~1e-5 on a few lora_A
elements of size ~0.1 (the learning rate is 1e-2), while lora_B agrees to ~1e-7. LoRA dropout is 0, since ranks
draw their own dropout masks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

from equitune.cli import main  # noqa: E402
from equitune.errors import EquituneError  # noqa: E402
from equitune.legacy import finetune_ollama_main  # noqa: E402
from equitune.train.dataset import collate, iterate_batches, load_dataset  # noqa: E402
from equitune.train.distributed import World, launch_command, plan_processes  # noqa: E402
from equitune.train.report import read_metrics  # noqa: E402

SETTINGS = {
    "training.gradient_accumulation_steps": 2,
    "training.max_steps": 5,
    "training.warmup_steps": 1,
    "training.eval_steps": 2,
    "training.save_steps": 3,
    "training.learning_rate": 0.01,
    "training.max_seq_length": 128,
    "training.precision": "fp32",
    "training.seed": 5,
    "lora_config.dropout": 0.0,
}


def _sets(batch_size: int) -> list[str]:
    items = {**SETTINGS, "training.batch_size": batch_size}
    return [arg for key, value in items.items() for arg in ("--set", f"{key}={value}")]


def test_launch_command_runs_the_worker_under_torchrun() -> None:
    assert launch_command(3, Path("/tmp/job.json"), python="/venv/bin/python") == [
        "/venv/bin/python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=3",
        "-m",
        "equitune.train.worker",
        "--job",
        "/tmp/job.json",
    ]
    assert launch_command(1, "j.json")[0] == sys.executable


def test_process_plan() -> None:
    cpu = plan_processes(2, available_gpus=0)
    assert (cpu.processes, cpu.device, cpu.backend) == (2, "cpu", "gloo")
    gpu = plan_processes(2, available_gpus=4)
    assert (gpu.processes, gpu.device, gpu.backend) == (2, "cuda", "nccl")
    assert plan_processes(None, available_gpus=4).processes == 4
    with pytest.raises(EquituneError, match="more GPUs than this machine has: 2 CUDA"):
        plan_processes(3, available_gpus=2)
    with pytest.raises(EquituneError, match="give --gpus N"):
        plan_processes(None, available_gpus=0)


def test_shards_cover_every_row_once(tmp_path: Path) -> None:
    tok = tiny.make_tokenizer()
    data = load_dataset(tiny.write_jsonl(tmp_path / "t.jsonl", tiny.EXAMPLES[:5]), tok, 128)
    whole = list(iterate_batches(data, 4, 0, 0))  # batches of 4 and 1 rows
    fake = World(rank=0, size=1)
    assert fake.shard(iterate_batches) is iterate_batches
    shards = []
    for rank in range(2):
        world = World(rank, 2, all_reduce=lambda t: None, barrier=lambda: None)
        shards.append(list(world.shard(iterate_batches)(data, 4, 0, 0)))
    for b, (r0, r1) in zip(whole, zip(*shards, strict=True), strict=True):
        assert r0.indices + r1.indices == b.indices
        assert torch.equal(torch.cat([r0.input_ids, r1.input_ids]), b.input_ids)
    assert [len(s[-1].indices) for s in shards] == [0, 1]  # a 1-row batch leaves rank 0 with nothing
    assert collate(data, whole[0].indices).input_ids.shape == whole[0].input_ids.shape


def test_flag_errors(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--gpus", "2"]) == 1
    assert "--gpus needs --distributed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        finetune_ollama_main(["--gpus", "2"])
    assert "--gpus needs --distributed" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="--gpus 2 means CPU gloo processes only without CUDA")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], strategy: str
) -> None:
    tiny.save_tiny(in_tmp / "base")
    data = in_tmp / "td"
    data.mkdir()
    # 13 examples: global micro-batches of 4, 4, 4 and 1 (that one leaves rank 0 empty); 3 validation examples
    # split 1 + 2 over the ranks
    tiny.write_jsonl(data / "train.jsonl", tiny.EXAMPLES * 2 + tiny.EXAMPLES[:1])
    tiny.write_jsonl(data / "valid.jsonl", tiny.EXAMPLES[:3])
    common = ["train", "--base-model", str(in_tmp / "base"), "--data", "td"]

    assert main([*common, "--name", "single", *_sets(4)]) == 0
    capsys.readouterr()
    strategy_set = ["--set", f"training.distributed_strategy={strategy}"]
    assert main([*common, "--name", "ddp", "--distributed", "--gpus", "2", *_sets(2), *strategy_set]) == 0, (
        capsys.readouterr()
    )
    out, err = capsys.readouterr()
    assert "Trained 5 steps" in out
    assert "runs 2 CPU processes with the gloo backend" in " ".join(err.split())

    single, ddp = in_tmp / "finetuned_models" / "single", in_tmp / "finetuned_models" / "ddp"
    a, b = read_metrics(single / "metrics.jsonl"), read_metrics(ddp / "metrics.jsonl")
    assert [(m["step"], "loss" in m) for m in a] == [(m["step"], "loss" in m) for m in b]  # rank 0 alone wrote
    assert len([m for m in b if "loss" in m]) == 5 and len([m for m in b if "val_loss" in m]) == 4
    for x, y in zip(a, b, strict=True):
        for key in ("loss", "val_loss", "lr", "tokens", "label_tokens", "epoch"):
            if key in x:
                assert y[key] == pytest.approx(x[key], rel=1e-5), (x["step"], key)
    for name in ("adapter", "checkpoints/step-5/adapter", "checkpoints/step-3/adapter"):
        w1 = load_file(single / name / "adapter_model.safetensors")
        w2 = load_file(ddp / name / "adapter_model.safetensors")
        assert w1.keys() == w2.keys()
        for key in w1:
            assert (w1[key] - w2[key]).abs().max() <= 5e-5, (name, key)
            assert (w1[key] - w2[key]).norm() <= 2e-5 * w1[key].norm(), (name, key)
        assert any(w.abs().max() > 0.01 for w in w1.values())  # the adapters did move
    report = json.loads((ddp / "training_report.json").read_text())
    assert report["processes"] == 2 and report["global_batch_size"] == 8
    assert report["distributed_strategy"] == strategy
    assert report["sharded_layers"] == (2 if strategy == "fsdp" else 0)  # the tiny model's two decoder layers
    assert json.loads((single / "training_report.json").read_text())["global_batch_size"] == 8
    assert sorted(p.name for p in ddp.iterdir() if p.name.startswith(".")) == []  # no temporary leftovers
