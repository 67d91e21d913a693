"""The training recipe on a tiny random Llama: loss, outputs, report, chunked loss, continue-training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

from equitune.config import LoraConfig, TrainingConfig  # noqa: E402
from equitune.train import loop  # noqa: E402
from equitune.train.dataset import collate, file_sha256, load_dataset  # noqa: E402
from equitune.train.loop import causal_lm_loss, train, wrap_lora  # noqa: E402
from equitune.train.report import read_metrics  # noqa: E402

LORA = LoraConfig(
    rank=8,
    alpha=16,
    dropout=0.0,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
)


def _config(**overrides: object) -> TrainingConfig:
    base: dict[str, object] = dict(
        learning_rate=1e-2,
        batch_size=4,
        gradient_accumulation_steps=1,
        max_steps=30,
        warmup_steps=3,
        eval_steps=10,
        save_steps=10,
        logging_steps=1,
        seed=3,
        early_stopping_patience=None,
    )
    base.update(overrides)
    return TrainingConfig.model_validate(base)


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    return (
        tiny.write_jsonl(tmp_path / "train.jsonl", tiny.EXAMPLES * 3),
        tiny.write_jsonl(tmp_path / "valid.jsonl", tiny.EXAMPLES[:3]),
    )


def test_training_learns_and_writes_every_artefact(tmp_path: Path, data: tuple[Path, Path]) -> None:
    tok = tiny.make_tokenizer()
    model = tiny.make_model(len(tok))
    train_set, valid_set = (load_dataset(p, tok, 256) for p in data)
    result = train(
        model, tok, train_set, valid_set, _config(), LORA, tmp_path / "out", progress=False, base_model="tiny-llama"
    )

    assert result.steps == 30 and result.total_steps == 30 and not result.stopped_early
    assert result.train_loss_first is not None and result.train_loss_last is not None
    assert result.train_loss_last < 0.5 * result.train_loss_first  # a tiny repeated set is learnt
    assert result.val_loss_before is not None and result.best_val_loss is not None
    assert result.best_val_loss < result.val_loss_before - 1.0
    assert result.precision in {"int8", "bf16", "fp32"} and result.tokens_per_s > 0

    metrics = read_metrics(result.metrics_path)
    train_lines = [m for m in metrics if "loss" in m]
    eval_lines = [m for m in metrics if "val_loss" in m]
    assert [m["step"] for m in train_lines] == list(range(1, 31))
    assert [m["step"] for m in eval_lines] == [0, 10, 20, 30]
    for key in ("step", "epoch", "loss", "lr", "tokens", "tokens_per_s", "elapsed_s"):
        assert all(key in m for m in train_lines), key
    assert all(b["tokens"] > a["tokens"] for a, b in zip(train_lines, train_lines[1:], strict=False))
    assert max(m["lr"] for m in train_lines) == pytest.approx(1e-2) and train_lines[0]["lr"] < 1e-2  # warm-up
    assert train_lines[-1]["epoch"] == pytest.approx(30 / 5)  # 18 examples, batch 4 -> 5 batches an epoch

    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result.plot_path.stat().st_size > 5000
    report = json.loads(result.report_path.read_text())
    assert report["base_model"] == "tiny-llama" and report["steps"] == 30
    assert report["data"]["train"]["sha256"] == file_sha256(data[0])
    assert report["data"]["valid"]["sha256"] == file_sha256(data[1])
    assert report["tokens"] == result.tokens > report["label_tokens"] > 0
    assert report["val_loss_before"] == result.val_loss_before and report["best_val_loss"] == result.best_val_loss
    assert report["truncation"]["train"]["examples_truncated"] == 0
    assert report["precision"] == result.precision

    adapter = result.adapter_dir
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "equitune_adapter.json").read_text())["step"] == result.best_step
    weights = load_file(adapter / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # trained, not the zero init
    assert result.checkpoint_dir is not None and result.checkpoint_dir.name == "step-30"
    assert sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir()) == ["step-20", "step-30"]


def test_truncation_is_reported(tmp_path: Path, data: tuple[Path, Path]) -> None:
    tok = tiny.make_tokenizer()
    train_set = load_dataset(data[0], tok, 36)  # shorter than some conversations
    assert train_set.truncation.examples_truncated > 0
    result = train(
        tiny.make_model(len(tok)), tok, train_set, None, _config(max_steps=2), LORA, tmp_path / "o", progress=False
    )
    report = json.loads(result.report_path.read_text())
    assert report["truncation"]["train"]["examples_truncated"] == train_set.truncation.examples_truncated
    assert report["truncation"]["train"]["assistant_tokens_lost"] == train_set.truncation.assistant_tokens_lost
    assert result.best_val_loss is None and (result.adapter_dir / "adapter_model.safetensors").is_file()


def test_chunked_loss_equals_the_models_own_loss(monkeypatch: pytest.MonkeyPatch, data: tuple[Path, Path]) -> None:
    tok = tiny.make_tokenizer()
    model = wrap_lora(tiny.make_model(len(tok)), LORA, None)
    ds = load_dataset(data[0], tok, 256)
    batch = collate(ds, [0, 1, 2, 3])
    n = batch.num_label_tokens
    reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss * n
    reference.backward()
    ref_grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    monkeypatch.setattr(loop, "LOSS_CHUNK_ROWS", 7)  # several recomputed chunks
    chunked = causal_lm_loss(model, batch)
    chunked.backward()
    assert chunked.item() == pytest.approx(reference.item(), rel=1e-5)
    for g, p in zip(ref_grads, [p for p in model.parameters() if p.requires_grad], strict=True):
        assert torch.allclose(g, p.grad, rtol=1e-5, atol=1e-5)


def test_loss_is_normalised_over_the_accumulated_step(tmp_path: Path, data: tuple[Path, Path]) -> None:
    """Batch 4 x 1 and batch 2 x accumulation 2 over the same examples take the same optimiser step."""
    tok = tiny.make_tokenizer()
    ds = load_dataset(data[1], tok, 256)
    ds.examples = ds.examples[:2] + ds.examples[:2]  # two equal pairs: any batching sees the same 4 rows
    ds.examples = [ds.examples[0], ds.examples[2], ds.examples[1], ds.examples[3]]
    weights, losses = [], []
    for bs, accum in ((4, 1), (2, 2)):
        cfg = _config(
            max_steps=1,
            batch_size=bs,
            gradient_accumulation_steps=accum,
            warmup_steps=0,
            precision="fp32",
            max_grad_norm=0,
        )
        r = train(tiny.make_model(len(tok)), tok, ds, None, cfg, LORA, tmp_path / f"n{bs}", progress=False)
        weights.append(load_file(r.adapter_dir / "adapter_model.safetensors"))
        losses.append(r.train_loss_first)
    # Token-weighted mean over the whole step (a mean of per-micro-batch means would differ: the pairs differ).
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for key in weights[0]:
        assert torch.allclose(weights[0][key], weights[1][key], atol=1e-6), key


def test_continue_training_starts_from_the_finished_adapter(tmp_path: Path, data: tuple[Path, Path]) -> None:
    tok = tiny.make_tokenizer()
    base = tiny.make_model(len(tok))
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    train_set, valid_set = (load_dataset(p, tok, 256) for p in data)
    first = train(base, tok, train_set, valid_set, _config(max_steps=20), LORA, tmp_path / "a", progress=False)
    start = load_file(first.adapter_dir / "adapter_model.safetensors")

    new_data = tiny.write_jsonl(tmp_path / "new.jsonl", [("Rate NVDA.", "NVDA: Buy. Target 150, upside 9%.")] * 8)
    fresh = tiny.make_model(len(tok))
    fresh.load_state_dict(base_state)
    second = train(
        fresh,
        tok,
        load_dataset(new_data, tok, 256),
        valid_set,
        _config(max_steps=5, warmup_steps=0),
        LORA,
        tmp_path / "b",
        init_adapter=first.adapter_dir,
        progress=False,
    )
    # It starts where the first run's best adapter was, not from a zero-initialised adapter ...
    assert second.val_loss_before == pytest.approx(first.best_val_loss, rel=1e-4)
    assert second.val_loss_before is not None and first.val_loss_before is not None
    assert second.val_loss_before < first.val_loss_before - 1.0
    # ... and moves the weights.
    end = load_file(second.checkpoint_dir / "adapter" / "adapter_model.safetensors")  # type: ignore[operator]
    assert start.keys() == end.keys()
    assert any(not torch.allclose(start[k], end[k]) for k in start)
    report = json.loads(second.report_path.read_text())
    assert report["init_adapter"] == str(first.adapter_dir)


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path: Path, data: tuple[Path, Path]) -> None:
    tok = tiny.make_tokenizer()
    ds = load_dataset(data[1], tok, 256)
    train(tiny.make_model(len(tok)), tok, ds, None, _config(max_steps=1), LORA, tmp_path / "o", progress=False)
    with pytest.raises(Exception, match="resume it"):
        train(tiny.make_model(len(tok)), tok, ds, None, _config(max_steps=1), LORA, tmp_path / "o", progress=False)


def test_gradient_checkpointing_changes_memory_not_results(tmp_path: Path, data: tuple[Path, Path]) -> None:
    tok = tiny.make_tokenizer()
    ds = load_dataset(data[1], tok, 256)
    losses, weights = [], []
    for flag in (False, True):
        cfg = _config(max_steps=2, precision="fp32", gradient_checkpointing=flag)
        r = train(tiny.make_model(len(tok)), tok, ds, None, cfg, LORA, tmp_path / f"gc{flag}", progress=False)
        losses.append(r.train_loss_last)
        weights.append(load_file(r.adapter_dir / "adapter_model.safetensors"))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-5) for k in weights[0])


def test_early_stopping_keeps_the_best_adapter(tmp_path: Path, data: tuple[Path, Path]) -> None:
    """A loss function passed in makes every evaluation after the first one worse: training stops after
    ``early_stopping_patience`` evaluations without improvement, and adapter/ holds the best step's weights."""
    tok = tiny.make_tokenizer()
    train_set, valid_set = (load_dataset(p, tok, 256) for p in data)
    evaluations: list[int] = []

    def worsening_eval_loss(model: object, batch: object) -> torch.Tensor:
        loss = causal_lm_loss(model, batch)  # type: ignore[arg-type]
        if getattr(model, "training", True):
            return loss
        evaluations.append(1)
        return loss + 10.0 * len(evaluations) * batch.num_label_tokens  # type: ignore[attr-defined]

    cfg = _config(max_steps=20, eval_steps=2, save_steps=100, early_stopping_patience=2)
    result = train(
        tiny.make_model(len(tok)),
        tok,
        train_set,
        valid_set,
        cfg,
        LORA,
        tmp_path / "o",
        progress=False,
        loss_fn=worsening_eval_loss,
    )
    assert result.stopped_early and result.steps == 6 and result.best_step == 2
    assert json.loads((result.adapter_dir / "equitune_adapter.json").read_text())["step"] == 2
    assert result.checkpoint_dir is not None and result.checkpoint_dir.name == "step-6"
    metrics = read_metrics(result.metrics_path)
    assert [m["step"] for m in metrics if "val_loss" in m] == [0, 2, 4, 6]
    assert json.loads(result.report_path.read_text())["stopped_early"] is True
