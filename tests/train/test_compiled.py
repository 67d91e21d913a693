"""training.compile: when the decoder layers are compiled, that compiled training matches eager, and fallbacks."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

from equitune.config import LoraConfig  # noqa: E402
from equitune.train import compiled  # noqa: E402
from equitune.train.compiled import compile_layers, remove_compile, should_compile  # noqa: E402
from equitune.train.dataset import collate, load_dataset  # noqa: E402
from equitune.train.distributed import decoder_layers  # noqa: E402
from equitune.train.loop import causal_lm_loss, wrap_lora  # noqa: E402

CPU, GPU = torch.device("cpu"), torch.device("cuda")


def _model() -> Any:
    tok = tiny.make_tokenizer()
    return wrap_lora(tiny.make_model(len(tok)), LoraConfig(rank=4, alpha=8, dropout=0.0), None), tok


def test_when_auto_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = _model()
    assert not should_compile("auto", model, CPU, [])  # a test-sized model: compiling costs more than it saves
    assert should_compile("always", model, CPU, [])
    assert not should_compile("never", model, CPU, [])
    assert not should_compile("always", model, CPU, ["gradient checkpointing"])
    monkeypatch.setattr(compiled, "AUTO_MIN_PARAMETERS", 1)
    assert should_compile("auto", model, CPU, [])
    assert not should_compile("auto", model, GPU, [])
    assert not should_compile("auto", model, CPU, ["fsdp"])


def _loss_and_grads(model: Any, batch: Any) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = causal_lm_loss(model, batch)
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.slow
def test_compiled_training_forward_matches_eager_and_eval_stays_eager(tmp_path: Path) -> None:
    model, tok = _model()
    data = load_dataset(tiny.write_jsonl(tmp_path / "t.jsonl", tiny.EXAMPLES), tok, 64)
    batch = collate(data, range(4))
    model.train()
    eager_loss, eager_grads = _loss_and_grads(model, batch)
    assert compile_layers(model) == len(decoder_layers(model)) == 2
    compiled_loss, compiled_grads = _loss_and_grads(model, batch)
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        assert torch.allclose(a, b, rtol=2e-3, atol=1e-4)  # fused kernels sum in another order
    dispatch = decoder_layers(model)[0].forward
    assert getattr(dispatch, "equitune_compiled", False)
    assert remove_compile(model) == 2
    assert not any("forward" in vars(layer) for layer in decoder_layers(model))


def test_a_failed_compilation_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: Any) -> None:
    def broken(fn: Any, **kwargs: Any) -> Any:
        def run(*args: Any, **kw: Any) -> Any:
            raise torch._dynamo.exc.BackendCompilerFailed(lambda *a: None, RuntimeError("no C++ compiler"), None)

        return run

    monkeypatch.setattr(torch, "compile", broken)
    model, tok = _model()
    data = load_dataset(tiny.write_jsonl(tmp_path / "t.jsonl", tiny.EXAMPLES), tok, 64)
    batch = collate(data, range(4))
    model.train()
    expected, _ = _loss_and_grads(model, batch)
    compile_layers(model)
    with caplog.at_level(logging.WARNING, logger="equitune.train.compiled"):
        first, _ = _loss_and_grads(model, batch)
        second, _ = _loss_and_grads(model, batch)
    assert first == pytest.approx(expected, rel=1e-6) and second == pytest.approx(expected, rel=1e-6)
    warnings = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1  # said once, then eager for good


@pytest.mark.slow
def test_compiled_loss_matches_the_eager_int8_loss() -> None:
    from equitune.train import fast_ops
    from equitune.train.fast_ops import fused_linear_cross_entropy
    from equitune.train.int8_ops import Int8Head

    gen = torch.Generator().manual_seed(4)
    hidden = torch.randn(70, 32, generator=gen, requires_grad=True)
    weight = torch.randn(500, 32, generator=gen)
    targets = torch.randint(0, 500, (70,), generator=gen)
    int8 = Int8Head(weight, block=128)

    def run() -> tuple[float, torch.Tensor]:
        hidden.grad = None
        loss = fused_linear_cross_entropy(hidden, weight, targets, 32, int8)
        loss.backward()
        assert hidden.grad is not None
        return loss.item(), hidden.grad.clone()

    eager_loss, eager_grad = run()
    model, _ = _model()
    compile_layers(model)  # switches the compiled loss on with the layers
    try:
        assert fast_ops.int8_loss is not fast_ops.EAGER_INT8_LOSS
        compiled_loss, compiled_grad = run()
    finally:
        remove_compile(model)
    assert fast_ops.int8_loss is fast_ops.EAGER_INT8_LOSS
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    assert torch.allclose(compiled_grad, eager_grad, rtol=1e-4, atol=1e-5)
