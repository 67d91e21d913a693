"""Int8 products through frozen base weights (training.precision int8) against their fp32 forms."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

from equitune.config import LoraConfig, TrainingConfig  # noqa: E402
from equitune.errors import EquituneError  # noqa: E402
from equitune.train import int8_ops, loop  # noqa: E402
from equitune.train.dataset import load_dataset  # noqa: E402
from equitune.train.fast_ops import fused_linear_cross_entropy  # noqa: E402
from equitune.train.int8_ops import (  # noqa: E402
    Int8Head,
    Int8Linear,
    Int8Weight,
    install_int8,
    quantize_rows,
    remove_int8,
)
from equitune.train.loop import resolve_precision, speed_ratio, wrap_lora  # noqa: E402


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def test_quantize_rows_round_trips_within_half_a_step() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(33, 70, generator=gen) * torch.logspace(-3, 3, 33).unsqueeze(1)  # rows of very different size
    x[5] = 0.0
    q, scale = quantize_rows(x)
    assert q.dtype == torch.int8 and scale.shape == (33, 1)
    assert int(q.abs().max()) == 127  # each non-zero row uses the whole range
    assert torch.all(q[5] == 0)
    error = (q.float() * scale - x).abs()
    assert torch.all(error <= scale / 2 + 1e-6 * x.abs())


def test_int8_linear_forward_and_input_gradient_are_close_to_fp32_and_exact_in_eval() -> None:
    gen = torch.Generator().manual_seed(1)
    layer = torch.nn.Linear(96, 40, bias=True)
    layer.requires_grad_(False)
    x = torch.randn(3, 17, 96, generator=gen, requires_grad=True)
    upstream = torch.randn(3, 17, 40, generator=gen)
    reference = F.linear(x, layer.weight, layer.bias)
    (reference * upstream).sum().backward()
    assert x.grad is not None
    ref_grad, x.grad = x.grad.clone(), None

    layer.int8_weights = Int8Weight(layer.weight)  # type: ignore[assignment]
    layer.__class__ = Int8Linear
    out = layer(x)
    (out * upstream).sum().backward()
    assert out.shape == reference.shape
    assert 0 < _rel(out, reference) < 0.02
    assert x.grad is not None and 0 < _rel(x.grad, ref_grad) < 0.02
    layer.eval()  # evaluation: the plain fp32 product
    assert torch.equal(layer(x), reference)
    layer.train()
    with torch.no_grad():
        assert torch.equal(layer(x), reference)


def test_install_and_remove_leave_the_state_dict_alone() -> None:
    tok = tiny.make_tokenizer()
    model = wrap_lora(tiny.make_model(len(tok)), LoraConfig(rank=4, alpha=8, dropout=0.0), None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = [
        m
        for name, m in model.named_modules()
        if type(m) is torch.nn.Linear and not m.weight.requires_grad and "lora_" not in name
    ]
    head = model.get_base_model().get_output_embeddings()
    switched = install_int8(model)
    assert switched == len(frozen) - 1  # every frozen linear but the output layer
    assert type(head) is torch.nn.Linear and isinstance(head.int8_head, Int8Head)
    assert all(type(m) is Int8Linear for m in frozen if m is not head)
    assert not any(type(m) is Int8Linear for name, m in model.named_modules() if "lora_" in name)
    assert model.state_dict().keys() == before.keys()
    assert remove_int8(model) == switched
    assert all(type(m) is torch.nn.Linear and not hasattr(m, "int8_weights") for m in frozen)
    assert not hasattr(head, "int8_head")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_layers_reading_one_tensor_quantise_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    real = int8_ops.quantize_rows

    def counting(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(tuple(x.shape))
        return real(x)

    monkeypatch.setattr(int8_ops, "quantize_rows", counting)
    layers = [torch.nn.Linear(32, n, bias=False).requires_grad_(False) for n in (32, 8, 8)]
    for layer in layers:
        layer.int8_weights = Int8Weight(layer.weight)  # type: ignore[assignment]
        layer.__class__ = Int8Linear
    calls.clear()
    x = torch.randn(2, 5, 32)
    first = [layer(x) for layer in layers]  # q, k and v of one hidden state
    assert len(calls) == 1
    x.mul_(2.0)  # changed in place: its version moves on, so it is quantised again
    second = [layer(x) for layer in layers]
    assert len(calls) == 2
    assert all(torch.allclose(b, 2 * a, rtol=1e-5, atol=1e-6) for a, b in zip(first, second, strict=True))
    layers[0](x.clone())  # another tensor with the same values
    assert len(calls) == 3


def _loss_and_grad(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, head: Int8Head | None
) -> tuple[float, torch.Tensor]:
    hidden = hidden.detach().requires_grad_()
    loss = fused_linear_cross_entropy(hidden, weight, targets, 16, head)
    loss.backward()
    assert hidden.grad is not None
    return loss.item(), hidden.grad


def test_int8_head_pads_the_vocabulary_to_whole_blocks_and_scales_each_block() -> None:
    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(300, 24, generator=gen)
    weight[128:256] *= 50.0  # one block of much larger rows
    head = Int8Head(weight, block=128)
    assert (head.vocab, head.block, head.blocks) == (300, 128, 3)
    assert head.logits_q.shape == head.grad_q.shape == (384, 24) and head.grad_scale.shape == (3, 24)
    assert torch.all(head.logits_q[300:] == 0) and torch.all(head.grad_q[300:] == 0)
    assert head.dither.shape == (64, 384) and head.dither.dtype == torch.uint8
    assert head.nbytes() == 2 * 384 * 24 + 64 * 384
    assert torch.equal(Int8Head(weight, block=128).dither, head.dither)  # fixed: a resumed run is unchanged
    restored = head.grad_q.float().view(3, 128, 24) * head.grad_scale[:, None, :]
    error = (restored.reshape(384, 24)[:300] - weight).abs()
    assert torch.all(error <= head.grad_scale.repeat_interleave(128, 0)[:300] / 2 + 1e-6)
    assert float(head.grad_scale[1].min()) > 10 * float(head.grad_scale[0].max())  # its own scale per block
    small = Int8Head(weight[:40], block=128)  # a vocabulary smaller than a block is one block
    assert (small.block, small.blocks) == (40, 1)


def test_int8_loss_and_gradient_are_close_to_fp32() -> None:
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(40, 32, generator=gen) * 2
    weight = torch.randn(300, 32, generator=gen)
    targets = torch.randint(0, 300, (40,), generator=gen)
    plain_loss, plain_grad = _loss_and_grad(hidden, weight, targets, None)
    loss, grad = _loss_and_grad(hidden, weight, targets, Int8Head(weight, block=64))
    assert loss != plain_loss
    assert loss == pytest.approx(plain_loss, rel=0.01)
    assert 0 < _rel(grad, plain_grad) < 0.03
    assert float(F.cosine_similarity(grad, plain_grad, dim=1).min()) > 0.99


def _int8_logit_gradient(
    logits: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, head: Int8Head
) -> torch.Tensor:
    """d(loss)/d(hidden) through the int8 softmax path from given (exactly represented) logits."""
    from equitune.train.fast_ops import _int8_chunk

    padded = head.blocks * head.block
    acc = torch.zeros(logits.shape[0], padded, dtype=torch.int32)
    acc[:, : logits.shape[1]] = (logits * 1000).round().int()
    head.logits_scale = torch.full((1, padded), 1e-3)  # the logits are exactly acc / 1000
    out = torch.empty(logits.shape[0], weight.shape[1])
    _int8_chunk(head, acc, torch.ones(logits.shape[0], 1), targets, weight, out)
    return out


def test_int8_logit_gradient_is_unbiased_over_tokens_and_keeps_the_target_term() -> None:
    # Every row: one likely token (logit 6) and a tail of 511 tokens each e^-6 ~ 1/400 of it, together more than
    # half the probability, whose weights share a direction (as the rare tokens of a real vocabulary do). In a
    # block with the likely token, rounding to nearest makes the whole tail 0, the same way in every row, and the
    # gradient summed over the tokens (what the LoRA weights receive) loses the tail's pull; the dithered rounding
    # keeps it on average. Rows whose target is the likely token keep their small gradient through the exact
    # target term (the tail then gets its own scale).
    gen = torch.Generator().manual_seed(5)
    vocab, width, rows = 512, 16, 256
    weight = torch.randn(vocab, width, generator=gen) + 2.0 * torch.randn(width, generator=gen)
    logits = 0.1 * torch.randn(rows, vocab, generator=gen)
    logits[:, 7] = 6.0
    targets = torch.full((rows,), 7)
    targets[rows // 2 :] = torch.randint(8, vocab, (rows // 2,), generator=gen)  # half the rows miss
    logits = (logits * 1000).round() / 1000
    reference = (torch.softmax(logits, dim=1) - F.one_hot(targets, vocab)) @ weight
    one_block = Int8Head(weight, block=vocab)  # one scale per row: the tail shares the likely token's block
    dithered = _int8_logit_gradient(logits, weight, targets, one_block)
    one_block.dither.fill_(127)  # u ~ 0.5: rounding to nearest
    nearest = _int8_logit_gradient(logits, weight, targets, one_block)
    hits, misses = slice(0, rows // 2), slice(rows // 2, rows)
    assert _rel(nearest[misses].sum(0), reference[misses].sum(0)) > 0.3  # the tail's pull is lost
    assert _rel(dithered[misses].sum(0), reference[misses].sum(0)) < 0.05
    for grad in (dithered, nearest):
        assert _rel(grad[hits].sum(0), reference[hits].sum(0)) < 0.02
    assert float(F.cosine_similarity(dithered, reference, dim=1).min()) > 0.95


def test_int8_loss_survives_a_block_of_only_the_target_and_padding() -> None:
    gen = torch.Generator().manual_seed(6)
    weight = torch.randn(129, 8, generator=gen)  # blocks of 64: the third holds token 128 and 63 pads
    hidden = torch.randn(5, 8, generator=gen)
    targets = torch.tensor([128, 0, 128, 64, 5])
    plain_loss, plain_grad = _loss_and_grad(hidden, weight, targets, None)
    loss, grad = _loss_and_grad(hidden, weight, targets, Int8Head(weight, block=64))
    assert loss == pytest.approx(plain_loss, rel=0.01)
    assert torch.isfinite(grad).all() and _rel(grad, plain_grad) < 0.03


def test_resolve_precision_prefers_int8_hardware_then_a_measured_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    for int8, bf16, expected in ((True, 0.5, "int8"), (False, 1.6, "bf16"), (False, 0.6, "fp32")):
        monkeypatch.setattr(loop, "cpu_int8_supported", lambda v=int8: v)
        monkeypatch.setattr(loop, "cpu_bf16_speedup", lambda v=bf16: v)
        assert resolve_precision("auto", cpu) == expected
    assert resolve_precision("int8", cpu) == "int8"
    with pytest.raises(EquituneError, match="int8 is the CPU path"):
        resolve_precision("int8", torch.device("cuda"))


def test_int8_support_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    def cpu(flags: str) -> bool:
        path = tmp_path / f"cpuinfo-{len(flags)}"
        path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\n", encoding="utf-8")
        return int8_ops.cpu_int8_supported.__wrapped__(str(path))

    assert cpu("avx512f avx512_vnni")
    assert cpu("avx_vnni")
    assert not cpu("avx512f avx512_bf16")
    assert not int8_ops.cpu_int8_supported.__wrapped__(str(tmp_path / "missing"))


def test_speed_ratio_sees_which_side_is_slower() -> None:
    def slow() -> None:
        time.sleep(0.004)

    def fast() -> None:
        time.sleep(0.001)

    assert speed_ratio(fast, slow, rounds=2) > 1.5
    assert speed_ratio(slow, fast, rounds=2) < 1 / 1.5


def test_int8_training_learns_and_evaluates_the_plain_model(tmp_path: Path) -> None:
    tok = tiny.make_tokenizer()
    data = tiny.write_jsonl(tmp_path / "train.jsonl", tiny.EXAMPLES * 3)
    train_set = load_dataset(data, tok, 64)
    model = tiny.make_model(len(tok))
    config = TrainingConfig(
        precision="int8",
        max_steps=8,
        batch_size=4,
        learning_rate=0.02,
        warmup_steps=0,
        eval_steps=4,
        save_steps=100,
        early_stopping_patience=None,
    )
    result = loop.train(model, tok, train_set, train_set, config, LoraConfig(rank=4, alpha=8), tmp_path / "o")
    assert result.precision == "int8"
    assert result.val_loss_after is not None and result.val_loss_before is not None
    assert result.val_loss_after < result.val_loss_before
    assert not any(type(m) is Int8Linear for m in model.modules())  # plain layers again afterwards
    # the reported validation loss is that of the adapter on the unquantised base
    again = loop.evaluate(model, train_set, 4, "fp32")
    assert again == pytest.approx(result.val_loss_after, rel=1e-6)
    report = json.loads(result.report_path.read_text(encoding="utf-8"))
    assert report["precision"] == "int8" and report["compiled"] is False
