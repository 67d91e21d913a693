"""Causal attention in query blocks (train/attention.py) against transformers' own sdpa attention."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

from equitune.train import attention  # noqa: E402
from equitune.train.attention import (  # noqa: E402
    NAME,
    block_causal_attention,
    install_block_causal,
    remove_block_causal,
)


class _Module(torch.nn.Module):
    def __init__(self, groups: int, causal: bool = True) -> None:
        super().__init__()
        self.num_key_value_groups, self.is_causal = groups, causal


def _qkv(tokens: int, heads: int = 4, kv_heads: int = 2, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = ((2, heads, tokens, 16), (2, kv_heads, tokens, 16), (2, kv_heads, tokens, 16))
    return [torch.randn(*shape, generator=gen, requires_grad=True) for shape in shapes]


def _padding_mask(tokens: int, lengths: tuple[int, int]) -> torch.Tensor:
    positions = torch.arange(tokens)
    causal = positions[None, :] <= positions[:, None]
    real = torch.stack([positions < n for n in lengths])  # keys that are not padding
    return causal[None, None] & real[:, None, None, :]


def _run(fn: Any, module: torch.nn.Module, qkv: list[torch.Tensor], mask: torch.Tensor | None, **kw: Any) -> Any:
    for t in qkv:
        t.grad = None
    out, _ = fn(module, *qkv, mask, scaling=0.25, **kw)
    upstream = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out * upstream).sum().backward()
    return out.detach(), [t.grad.clone() for t in qkv if t.grad is not None]


@pytest.mark.parametrize("tokens", [256, 300, 512, 1024])
@pytest.mark.parametrize("masked", [False, True])
def test_blocks_equal_sdpa_with_and_without_a_padding_mask(tokens: int, masked: bool) -> None:
    qkv = _qkv(tokens)
    mask = _padding_mask(tokens, (tokens, tokens - 37)) if masked else None
    module = _Module(groups=2)
    ref_out, ref_grads = _run(sdpa_attention_forward, module, qkv, mask)
    out, grads = _run(block_causal_attention, module, qkv, mask)
    assert out.shape == ref_out.shape == (2, tokens, 4, 16)
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert all(torch.allclose(g, r, atol=1e-4) for g, r in zip(grads, ref_grads, strict=True))


def test_blocks_skip_the_masked_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q: torch.Tensor, k: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append((q.shape[2], k.shape[2]))
        return sdpa(q, k, *args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    qkv = _qkv(512)
    block_causal_attention(_Module(groups=2), *qkv, None)
    assert calls == [(128, 128), (128, 256), (128, 384), (128, 512)]  # 5/8 of the 512 x 512 scores


@pytest.mark.parametrize(
    ("tokens", "kwargs", "module"),
    [
        (128, {}, _Module(2)),  # too short to gain
        (1100, {}, _Module(2)),  # the kernel's own blocks do better
        (512, {"dropout": 0.1}, _Module(2)),
        (512, {}, _Module(2, causal=False)),
    ],
)
def test_what_blocks_do_not_handle_goes_to_sdpa(
    monkeypatch: pytest.MonkeyPatch, tokens: int, kwargs: dict[str, Any], module: torch.nn.Module
) -> None:
    seen: list[int] = []

    def fake_sdpa(module: torch.nn.Module, query: torch.Tensor, *args: Any, **kw: Any) -> tuple[torch.Tensor, None]:
        seen.append(query.shape[2])
        return query.transpose(1, 2), None

    monkeypatch.setattr(attention, "_sdpa_forward", lambda: fake_sdpa)
    block_causal_attention(module, *_qkv(tokens), None, **kwargs)
    assert seen == [tokens]


def test_install_switches_a_model_and_remove_restores_it() -> None:
    tok = tiny.make_tokenizer()
    model = tiny.make_model(len(tok))
    model.set_attn_implementation("sdpa")
    model.eval()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, len(tok), (2, 300), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 260:] = 0
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
        assert install_block_causal(model)
        assert model.config._attn_implementation == NAME
        blocked = model(input_ids=ids, attention_mask=mask).logits
        unpadded = model(input_ids=ids).logits
    assert torch.allclose(blocked[0], plain[0], atol=1e-5) and torch.allclose(
        blocked[1, :260], plain[1, :260], atol=1e-5
    )
    assert torch.allclose(unpadded[0], plain[0], atol=1e-5)
    assert remove_block_causal(model) and model.config._attn_implementation == "sdpa"
    assert not remove_block_causal(model)
    model.set_attn_implementation("eager")
    assert not install_block_causal(model)  # only models on sdpa are switched
