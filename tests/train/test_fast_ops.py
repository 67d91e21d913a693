"""The CPU training kernels against their plain PyTorch forms, and the learning-rate schedule."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

from equitune.config import LoraConfig  # noqa: E402
from equitune.train import loop  # noqa: E402
from equitune.train.dataset import collate, load_dataset  # noqa: E402
from equitune.train.fast_ops import FastDropout, fused_linear_cross_entropy, install_fast_dropout  # noqa: E402
from equitune.train.loop import causal_lm_loss, lr_multiplier, wrap_lora  # noqa: E402


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    return (tiny.write_jsonl(tmp_path / "train.jsonl", tiny.EXAMPLES * 3), tmp_path)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_fused_cross_entropy_matches_the_plain_loss_and_gradient(chunk: int) -> None:
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(50, 16, generator=gen, requires_grad=True)
    weight = torch.randn(300, 16, generator=gen) * 3  # large logits: the max-shift must hold
    targets = torch.randint(0, 300, (50,), generator=gen)
    fused = fused_linear_cross_entropy(hidden, weight, targets, chunk) * 0.37
    fused.backward()
    assert hidden.grad is not None
    grad = hidden.grad.clone()
    hidden.grad = None
    plain = F.cross_entropy(hidden @ weight.t(), targets, reduction="sum") * 0.37
    plain.backward()
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    assert torch.allclose(grad, hidden.grad, atol=1e-5)


def test_fused_cross_entropy_without_gradient_and_with_a_trainable_head() -> None:
    hidden, weight, targets = torch.randn(9, 4), torch.randn(20, 4), torch.randint(0, 20, (9,))
    with torch.no_grad():
        value = fused_linear_cross_entropy(hidden, weight, targets)
    assert value.item() == pytest.approx(
        F.cross_entropy(hidden @ weight.t(), targets, reduction="sum").item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="frozen"):
        fused_linear_cross_entropy(hidden, weight.requires_grad_(), targets)


def test_trainable_head_takes_the_recomputed_path(monkeypatch: pytest.MonkeyPatch, data: tuple[Path, Path]) -> None:
    tok = tiny.make_tokenizer()
    model = wrap_lora(tiny.make_model(len(tok)), LoraConfig(rank=4, alpha=8, dropout=0.0), None)
    head = model.get_base_model().get_output_embeddings()
    head.weight.requires_grad_(True)
    batch = collate(load_dataset(data[0], tok, 256), [0, 1, 2])
    reference = model(**{"input_ids": batch.input_ids, "labels": batch.labels}).loss * batch.num_label_tokens
    reference.backward()
    ref_head = head.weight.grad.clone()
    model.zero_grad()
    monkeypatch.setattr(loop, "LOSS_CHUNK_ROWS", 5)
    chunked = causal_lm_loss(model, batch)
    chunked.backward()
    assert chunked.item() == pytest.approx(reference.item(), rel=1e-5)
    assert torch.allclose(ref_head, head.weight.grad, atol=1e-5)


def test_fast_dropout_drops_at_the_configured_rate_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    layer = FastDropout(0.05)
    x = torch.ones(400, 1000)
    y = layer(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(0.05, abs=0.002)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    values = torch.unique(y).tolist()
    assert values[0] == 0.0 and values[1:] == [pytest.approx(1 / (1 - 3277 / 65536))]
    x.requires_grad_(True)
    layer(x).sum().backward()  # the gradient flows through the kept elements only
    assert x.grad is not None and ((x.grad == 0) | (x.grad > 1)).all()
    layer.eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        FastDropout(1.0)


def test_dropout_is_replaced_in_the_lora_layers_only() -> None:
    tok = tiny.make_tokenizer()
    model = wrap_lora(tiny.make_model(len(tok)), LoraConfig(rank=4, alpha=8, dropout=0.1), None)
    others = sum(1 for m in model.modules() if type(m) is torch.nn.Dropout)
    replaced = install_fast_dropout(model)
    lora_layers = sum(1 for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict))
    assert replaced == lora_layers > 0
    assert sum(1 for m in model.modules() if type(m) is torch.nn.Dropout) == others - replaced
    assert all(m.p == 0.1 for m in model.modules() if isinstance(m, FastDropout))


def test_learning_rate_schedule() -> None:
    # warm-up: the first step already learns, the last warm-up step reaches the peak
    assert [lr_multiplier(s, 4, 20, "cosine") for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_multiplier(0, 0, 10, "linear") == 1.0
    cosine = [lr_multiplier(s, 2, 12, "cosine") for s in range(12)]
    assert all(a >= b for a, b in zip(cosine[2:], cosine[3:], strict=False)) and 0 < cosine[-1] < 0.05
    assert lr_multiplier(11, 2, 12, "linear") == pytest.approx(0.1)
    assert lr_multiplier(100, 2, 12, "linear") == 0.0
    assert lr_multiplier(7, 2, 12, "constant") == 1.0
    assert math.isclose(lr_multiplier(7, 2, 12, "cosine"), 0.5 * (1 + math.cos(math.pi * 0.5)))
