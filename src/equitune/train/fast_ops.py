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
from typing import Any

import torch

from equitune.train.int8_ops import Int8Weight, dequantize, quantize_rows

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


def _chunk_fused(
    acc: torch.Tensor, row_scale: torch.Tensor, col_scale: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For compilation: int32 logit accumulators and their scales in; the chunk's summed loss and
    d(loss)/d(logits) (fp32) out, in a couple of fused passes instead of an eager run's eight."""
    z = acc.float() * row_scale * col_scale
    picked = z.gather(1, targets[:, None]).squeeze(1)
    peak = z.amax(1, keepdim=True)
    e = (z - peak).exp()
    norm = e.sum(1, keepdim=True)
    total = (norm.log() + peak).squeeze(1).sub(picked).sum()
    probs = (e / norm).scatter_add(1, targets[:, None], torch.full_like(picked[:, None], -1.0))
    return total, probs


def _chunk_int8_eager(
    acc: torch.Tensor, row_scale: torch.Tensor, col_scale: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_chunk_fused` the eager way: dequantise in place, then :func:`_chunk_eager`."""
    part, probs = _chunk_eager(dequantize(acc, row_scale, col_scale), targets, True)
    assert probs is not None
    return part, probs


# How int8 logit accumulators become a chunk's loss and logit gradient: eager, or the compiled
# :func:`_chunk_fused` while the layers are compiled (``train/compiled.py`` sets it and puts this back).
int8_loss_chunk: Callable[..., tuple[torch.Tensor, torch.Tensor]] = _chunk_int8_eager


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
        int8_weight: Int8Weight | None,
    ) -> torch.Tensor:
        grad_hidden = torch.empty(hidden.shape if need_grad else (0,), dtype=torch.float32, device=hidden.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        w = weight.detach()
        for begin in range(0, hidden.shape[0], chunk_rows):
            end = min(begin + chunk_rows, hidden.shape[0])
            rows_in = hidden[begin:end].detach()
            t = targets[begin:end]
            if int8_weight is not None:
                xq, xs = quantize_rows(rows_in)
                acc = torch._int_mm(xq, int8_weight.forward_q.t())
                if need_grad:
                    loss_part, grad_logits = int8_loss_chunk(acc, xs, int8_weight.forward_scale, t)
                    total += loss_part
                    grad_hidden[begin:end] = grad_logits @ w
                    continue
                logits = dequantize(acc, xs, int8_weight.forward_scale)
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
    int8_weight: Int8Weight | None = None,
) -> torch.Tensor:
    """Summed cross-entropy of the logits ``hidden @ weight.T``; ``weight`` must not require a gradient.

    With ``int8_weight`` (the int8 form of ``weight``, :class:`~equitune.train.int8_ops.Int8Weight`) the logits
    come from an int8 product (rows of ``hidden`` quantised on the fly), and the softmax runs compiled when the
    layers are (:data:`int8_loss_chunk`). The gradient is always formed with ``weight`` in fp32: quantised to int8,
    the many small probabilities of a 49k vocabulary would round to zero and bias it (stochastic rounding would
    not, but its random numbers cost more than the int8 product saves)."""
    if weight.requires_grad:
        raise ValueError("fused_linear_cross_entropy treats the lm_head weight as frozen")
    need_grad = hidden.requires_grad and torch.is_grad_enabled()
    result: torch.Tensor = FusedLinearCrossEntropy.apply(hidden, weight, targets, chunk_rows, need_grad, int8_weight)
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
