"""Training-step kernels written for CPU throughput, numerically equivalent to their plain PyTorch forms.

- :class:`FusedLinearCrossEntropy`: ``cross_entropy(hidden @ weight.T, targets, reduction="sum")`` for a frozen
  lm_head, computed chunk by chunk; the gradient with respect to ``hidden`` is formed in the same pass (softmax
  minus one-hot, times the weight), so the (tokens x vocabulary) logits never exist whole, are never recomputed,
  and no log-softmax backward runs. On SmolLM2-135M (49k vocabulary) this is one lm_head matmul and one
  softmax pass fewer per step than a recomputed chunked loss.
- :class:`FastDropout`: inverted dropout whose keep-mask comes from 16-bit slices of 64-bit random integers
  (one generator call per four elements) instead of one Bernoulli draw per element; the drop probability is
  ``p`` rounded to a multiple of 2^-16. PEFT's LoRA dropout runs on every adapted layer's input, and the
  per-element draws measured about 10% of a CPU training step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from equitune.train.int8_ops import LEVELS, Int8Head, dequantize, quantize_rows

_INT16_SPAN = 1 << 16


def _chunk_eager(
    logits: torch.Tensor, targets: torch.Tensor, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Summed cross-entropy of one chunk of fp32 logits and, if asked, d(loss)/d(logits); in place, fewest passes
    an eager run can do."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    picked = logits[rows, targets]
    peak = logits.amax(dim=1, keepdim=True)
    probs = logits.sub_(peak).exp_()  # in place: the logits are not needed again
    norm = probs.sum(dim=1, keepdim=True)
    total = (norm.log().squeeze(1) + peak.squeeze(1) - picked).sum()
    if not need_grad:
        return total, None
    probs.div_(norm)
    probs[rows, targets] -= 1.0  # d(loss)/d(logits) = softmax - one-hot
    return total, probs


def _softmax_blocks(
    acc: torch.Tensor,
    row_scale: torch.Tensor,
    col_scale: torch.Tensor,
    targets: torch.Tensor,
    dither: torch.Tensor,
    vocab: int,
    block: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunk of int8 logits (int32 accumulators over the padded vocabulary, with their scales): the summed
    cross-entropy, and the softmax quantised for the int8 logit gradient.

    Returns ``(total, q, scales, p_target)``: ``q`` (rows x padded vocabulary, int8) and ``scales`` (rows x
    blocks) with ``softmax ~ q * scales`` block by block, the target's own probability left out (0 in ``q``) and
    returned exactly in ``p_target``, so the gradient ``softmax - one_hot`` has its one large term in fp32 (for a
    well-predicted token ``p_target - 1`` is small and would drown in the rounding of either part). Within a block,
    ``q = floor(127 * exp(z - block max) + u)``: the block's largest probability is 127, and no normaliser is
    needed until the scales. ``u`` is a fixed dither in (0, 1) (``dither``: uint8, 256 levels, one row per token
    modulo its rows): rounding to nearest would set every probability under 1/254 of its block's largest to 0,
    the same way for every token, and the many small probabilities of a large vocabulary would lose their pull
    on the gradient summed over a batch (on SmolLM2-135M: 35% relative error in the LoRA gradient, against 4%
    dithered). Written for compilation (two fused passes over the chunk); eager it is plain torch."""
    rows, padded = acc.shape
    blocks = padded // block
    z = (acc.float() * row_scale * col_scale).view(rows, blocks, block)
    cols = torch.arange(padded, device=acc.device, dtype=torch.int32).view(1, blocks, block)
    excluded = (cols == targets.to(torch.int32).view(rows, 1, 1)) | (cols >= vocab)
    z_other = torch.where(excluded, float("-inf"), z)
    # A block of nothing but the target and padding has no maximum: the float minimum keeps its exp at 0.
    block_max = z_other.amax(dim=2, keepdim=True).clamp(min=torch.finfo(torch.float32).min)
    e = (z_other - block_max).exp()
    row_dither = dither[torch.arange(rows, device=acc.device) % dither.shape[0]].view(rows, blocks, block)
    q = (e * LEVELS + (row_dither.float() + 0.5) * (1.0 / 256.0)).floor().to(torch.int8)
    sums = e.sum(dim=2)
    z_target = z.view(rows, padded).gather(1, targets[:, None]).squeeze(1)
    maxima = block_max.squeeze(2)
    peak = torch.maximum(maxima.amax(dim=1), z_target)
    weight = (maxima - peak[:, None]).exp()
    norm = (weight * sums).sum(dim=1) + (z_target - peak).exp()
    total = (norm.log() + peak - z_target).sum()
    p_target = (z_target - peak).exp() / norm
    return total, q.view(rows, padded), weight / (LEVELS * norm[:, None]), p_target


def _combine_blocks(
    products: torch.Tensor,
    scales: torch.Tensor,
    weight_scale: torch.Tensor,
    p_target: torch.Tensor,
    target_rows: torch.Tensor,
) -> torch.Tensor:
    """d(loss)/d(hidden) of one chunk: the block products (blocks x rows x hidden, int32) scaled by the softmax's
    scales (rows x blocks) and the weight's (blocks x hidden) and summed, plus the exact target term
    ``(p_target - 1) * W[target]``."""
    dequantised = products.float() * scales.t()[:, :, None] * weight_scale[:, None, :]
    return dequantised.sum(dim=0) + (p_target - 1.0)[:, None] * target_rows


@dataclass(frozen=True)
class Int8LossKernels:
    """How a chunk of int8 logits becomes its loss and logit gradient: eager, or compiled while the layers are
    (``train/compiled.py`` swaps :data:`int8_loss` and puts :data:`EAGER_INT8_LOSS` back)."""

    softmax: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = _softmax_blocks
    combine: Callable[..., torch.Tensor] = _combine_blocks


EAGER_INT8_LOSS = Int8LossKernels()
int8_loss = EAGER_INT8_LOSS


def _int8_chunk(
    head: Int8Head,
    acc: torch.Tensor,
    row_scale: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    out: torch.Tensor,
) -> torch.Tensor:
    """One chunk's summed loss from int8 logits; its d(loss)/d(hidden) written into ``out`` (int8 block products)."""
    total, q, scales, p_target = int8_loss.softmax(
        acc, row_scale, head.logits_scale, targets, head.dither, head.vocab, head.block
    )
    products = torch.empty((head.blocks, q.shape[0], head.grad_q.shape[1]), dtype=torch.int32, device=q.device)
    for b in range(head.blocks):
        cols = slice(b * head.block, (b + 1) * head.block)
        torch._int_mm(q[:, cols], head.grad_q[cols], out=products[b])
    out.copy_(int8_loss.combine(products, scales, head.grad_scale, p_target, weight[targets]))
    return total


class FusedLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets``; the weight is treated as frozen."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk_rows: int,
        need_grad: bool,
        int8_head: Int8Head | None,
    ) -> torch.Tensor:
        grad_hidden = torch.empty(hidden.shape if need_grad else (0,), dtype=torch.float32, device=hidden.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        w = weight.detach()
        for begin in range(0, hidden.shape[0], chunk_rows):
            end = min(begin + chunk_rows, hidden.shape[0])
            rows_in = hidden[begin:end].detach()
            t = targets[begin:end]
            if int8_head is not None:
                xq, xs = quantize_rows(rows_in)
                acc = torch._int_mm(xq, int8_head.logits_q.t())
                if need_grad:
                    total += _int8_chunk(int8_head, acc, xs, t, w, grad_hidden[begin:end])
                    continue
                logits = dequantize(acc, xs, int8_head.logits_scale)[:, : int8_head.vocab]
            else:
                logits = (rows_in @ w.t()).float()
            part, probs = _chunk_eager(logits, t, need_grad)
            total += part
            if probs is not None:
                grad_hidden[begin:end] = probs.to(w.dtype) @ w
        ctx.save_for_backward(grad_hidden)
        ctx.hidden_dtype = hidden.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None, None]:
        (grad_hidden,) = ctx.saved_tensors
        return (grad_hidden * grad_output).to(ctx.hidden_dtype), None, None, None, None, None


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_rows: int = 1024,
    int8_head: Int8Head | None = None,
) -> torch.Tensor:
    """Summed cross-entropy of the logits ``hidden @ weight.T``; ``weight`` must not require a gradient.

    With ``int8_head`` (the int8 forms of ``weight``, :class:`~equitune.train.int8_ops.Int8Head`) the logits come
    from an int8 product (rows of ``hidden`` quantised on the fly) and so does the logit gradient: the softmax is
    quantised per token and vocabulary block with a dither, the target's term stays exact
    (:func:`_softmax_blocks`), and the softmax runs compiled when the layers are (:data:`int8_loss`). Measured on
    SmolLM2-135M (one batch of 4 x 512 tokens, LoRA on q/k/v/o): the LoRA gradient through this loss is within
    4.3% (relative norm) of the fp32 one, most of it from the int8 logits; the logit gradient costs a third of
    its fp32 product."""
    if weight.requires_grad:
        raise ValueError("fused_linear_cross_entropy treats the lm_head weight as frozen")
    need_grad = hidden.requires_grad and torch.is_grad_enabled()
    result: torch.Tensor = FusedLinearCrossEntropy.apply(hidden, weight, targets, chunk_rows, need_grad, int8_head)
    return result


class _MaskedScale(torch.autograd.Function):
    """``x * keep * scale`` saving only the boolean mask for the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.mul(x, keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return torch.mul(grad, keep).mul_(ctx.scale), None, None


class FastDropout(torch.nn.Module):
    """Inverted dropout with a cheaper random mask (see the module docstring); identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * _INT16_SPAN)  # drop when the uniform 16-bit value falls below it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        words = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        uniform = words.view(torch.int16)[:n].view(x.shape)  # 16-bit values in [-32768, 32767]
        keep = uniform >= self.threshold - (1 << 15)
        del words, uniform
        scale = 1.0 / (1.0 - self.threshold / _INT16_SPAN)
        if not (x.requires_grad and torch.is_grad_enabled()):
            return torch.mul(x, keep).mul_(scale)
        result: torch.Tensor = _MaskedScale.apply(x, keep, scale)
        return result

    def extra_repr(self) -> str:
        return f"p={self.p}"


def install_fast_dropout(model: torch.nn.Module) -> int:
    """Replace the ``nn.Dropout`` modules of PEFT's LoRA layers (``lora_dropout``) by :class:`FastDropout`.

    Returns the number replaced. Other dropouts of the model are left alone.
    """
    replaced = 0
    for module in model.modules():
        table = getattr(module, "lora_dropout", None)
        if not isinstance(table, torch.nn.ModuleDict):
            continue
        for name, layer in list(table.items()):
            if type(layer) is torch.nn.Dropout and layer.p > 0:
                table[name] = FastDropout(layer.p)
                replaced += 1
    return replaced
