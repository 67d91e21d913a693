"""Int8 matmuls through the frozen base weights of a LoRA model on CPU (``training.precision: int8``).

A LoRA run never updates the base weights, so every matmul through them needs only two products: the forward
``x @ W.T`` and the input gradient ``g @ W``; the weight gradient, the one product that needs high precision
(Wortsman et al., 2023, "Stable and low-precision training for large-scale vision-language models", the
SwitchBack layer), is never formed. Both products run here as int8 x int8 -> int32 matrix products
(``torch._int_mm``; on AVX512-VNNI CPUs about 4x the fp32 rate), with absmax scales:

- forward: ``x`` quantised per row (token), ``W`` per output channel;
- backward: ``g`` quantised per row, ``W`` per input channel (the contraction runs over output channels).

The adapters, attention, norms, activations and the loss stay in fp32, and so does evaluation: a layer in eval
mode (or under ``no_grad``) computes the plain fp32 product, so validation losses are those of the adapter on
the unquantised base, the model that is merged and exported. The int8 weight copies are derived from the base
when installed (deterministic, so a resumed run is unchanged) and dropped by :func:`remove_int8`.

Layers whose input is shared (q/k/v read one normalised hidden state, gate/up another) quantise it once: the
last quantised input is kept, matched by identity and version counter, and a reference to it is held so its
memory cannot be reused by another tensor while it is the cached one. Inside a compiled layer
(``train/compiled.py``) the cache is bypassed and the compiler's common-subexpression elimination does the same.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from equitune.llamacpp import cpu_flags

log = logging.getLogger(__name__)

LEVELS = 127.0
_TINY = 1e-30
# int32 accumulation: each product is at most 127 * 127, so longer contractions could overflow.
MAX_CONTRACTION = (2**31 - 1) // (127 * 127)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantisation of each row of a 2-D float tensor: ``(q, scale)`` with ``x ~ q * scale``
    and ``scale`` of shape (rows, 1); an all-zero row gets a tiny scale and zeros."""
    x = x.float()
    peak = torch.maximum(x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True).neg_())
    scale = peak.clamp_(min=_TINY).div_(LEVELS)
    q = torch.mul(x, scale.reciprocal()).round_().to(torch.int8)
    return q, scale


def quantize_columns(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantisation of each column: ``(q, scale)`` with ``w ~ q * scale`` and scale (1, cols)."""
    q, scale = quantize_rows(w.t())
    return q.t(), scale.t()


class Int8Weight:
    """The int8 forms of one frozen weight ``W`` (out x in): per output channel for ``x @ W.T``, and per input
    channel (stored transposed and contiguous, the faster operand layout) for ``g @ W``."""

    def __init__(self, weight: torch.Tensor) -> None:
        w = weight.detach().float()
        self.forward_q, scale = quantize_rows(w)  # (out, in), scale (out, 1)
        self.forward_scale = scale.t().contiguous()  # (1, out)
        backward_q, self.backward_scale = quantize_columns(w)  # (out, in), scale (1, in)
        self.backward_qt = backward_q.t().contiguous()  # (in, out)

    def nbytes(self) -> int:
        return self.forward_q.numel() + self.backward_qt.numel()


# Vocabulary block of the loss's int8 logit gradient (``Int8Head``): each block of a row gets its own scale.
LOSS_VOCAB_BLOCK = 1024
# The fixed dither table of the softmax's quantisation (rows x padded vocabulary, 256 levels), reused across tokens.
DITHER_ROWS, DITHER_SEED = 64, 20_240_917


class Int8Head:
    """The int8 forms of a frozen output layer ``W`` (vocabulary x hidden) for the loss (``train/fast_ops.py``).

    - logits ``x @ W.T``: ``W`` per vocabulary row, as for any layer's forward product;
    - logit gradient ``d @ W`` (``d`` = softmax, tokens x vocabulary): the contraction runs over the vocabulary,
      so ``W`` is scaled per (block of ``block`` vocabulary rows, hidden column), the blocks of ``d`` get a scale
      per token each, and the block products are summed in fp32. Per-block scales keep the small probabilities of
      a large vocabulary: one scale per token would round everything below 1/254 of its largest probability to 0.

    The vocabulary is padded with zero rows to whole blocks (the loss masks the padding)."""

    def __init__(self, weight: torch.Tensor, block: int = LOSS_VOCAB_BLOCK) -> None:
        w = weight.detach().float()
        self.vocab, hidden = w.shape
        self.block = min(block, self.vocab)
        self.blocks = -(-self.vocab // self.block)
        padded = self.blocks * self.block
        if padded > self.vocab:
            w = torch.cat([w, w.new_zeros(padded - self.vocab, hidden)])
        self.logits_q, scale = quantize_rows(w)  # (padded, hidden), scale (padded, 1)
        self.logits_scale = scale.t().contiguous()  # (1, padded)
        # Each (block, hidden column) quantised as one row of block values.
        columns = w.view(self.blocks, self.block, hidden).transpose(1, 2).reshape(-1, self.block)
        q, column_scale = quantize_rows(columns)
        self.grad_q = q.view(self.blocks, hidden, self.block).transpose(1, 2).reshape(padded, hidden)
        self.grad_scale = column_scale.view(self.blocks, hidden)
        generator = torch.Generator().manual_seed(DITHER_SEED)
        self.dither = torch.randint(0, 256, (DITHER_ROWS, padded), generator=generator, dtype=torch.uint8)

    def nbytes(self) -> int:
        return self.logits_q.numel() + self.grad_q.numel() + self.dither.numel()


class _InputCache:
    """The last quantised activation, for the layers that read the same tensor (see the module docstring)."""

    def __init__(self) -> None:
        self.source: torch.Tensor | None = None
        self.version = -1
        self.value: tuple[torch.Tensor, torch.Tensor] | None = None

    def quantize(self, x2: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.source is source and self.version == source._version and self.value is not None:
            return self.value
        self.value = quantize_rows(x2)
        self.source, self.version = source, source._version
        return self.value

    def clear(self) -> None:
        self.source, self.value = None, None


_CACHE = _InputCache()


def int8_matmul(x2: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
    """``x2 @ (q * scale).T``-style product of a float (rows x k) matrix with an int8 (k x n) operand ``q``
    (scale (1, n)), the rows of ``x2`` quantised on the fly (through the shared cache when ``source`` is given)."""
    if source is not None and not torch.compiler.is_compiling():
        xq, xs = _CACHE.quantize(x2, source)
    else:
        xq, xs = quantize_rows(x2)
    return dequantize(torch._int_mm(xq, q), xs, scale)


def dequantize(acc: torch.Tensor, row_scale: torch.Tensor, col_scale: torch.Tensor) -> torch.Tensor:
    """An int32 product back to float: ``acc * row_scale * col_scale`` (a cast, then in-place scaling: faster than
    a mixed-type multiply)."""
    return acc.float().mul_(row_scale).mul_(col_scale)


class _Int8LinearFn(torch.autograd.Function):
    """``F.linear(x, W, b)`` for a frozen ``W`` (and ``b``): int8 forward and input gradient, nothing saved."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weights: Int8Weight, bias: torch.Tensor | None) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        out = int8_matmul(x2, weights.forward_q.t(), weights.forward_scale, x)
        if bias is not None:
            out.add_(bias.detach().float())
        ctx.weights, ctx.in_dtype = weights, x.dtype
        return out.view(*shape[:-1], out.shape[-1]).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        weights: Int8Weight = ctx.weights
        shape = grad.shape
        g2 = grad.reshape(-1, shape[-1])
        gx = int8_matmul(g2, weights.backward_qt.t(), weights.backward_scale, None)
        return gx.view(*shape[:-1], gx.shape[-1]).to(ctx.in_dtype), None, None


class Int8Linear(torch.nn.Linear):
    """A frozen ``nn.Linear`` whose training-mode products with a gradient run in int8 (:class:`_Int8LinearFn`);
    in eval mode, without a gradient, or for a trainable weight it is the plain fp32 layer. Installed by
    swapping the class of an existing layer (its parameters and state dict are untouched)."""

    int8_weights: Int8Weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and not self.weight.requires_grad:
            out: torch.Tensor = _Int8LinearFn.apply(x, self.int8_weights, self.bias)
            return out
        return F.linear(x, self.weight, self.bias)


def _eligible(name: str, module: torch.nn.Module, exclude: set[int]) -> bool:
    if type(module) is not torch.nn.Linear or id(module) in exclude:
        return False
    if module.weight.requires_grad or module.weight.device.type != "cpu":
        return False
    if "lora_" in name:  # PEFT's adapter layers are trained
        return False
    return module.in_features <= MAX_CONTRACTION and module.out_features <= MAX_CONTRACTION


def install_int8(model: torch.nn.Module) -> int:
    """Run every frozen ``nn.Linear`` of ``model`` (the base weights under the LoRA adapters, the MLPs) through
    int8 matmuls while training, and give a frozen output layer int8 logits and logit gradient (``int8_head``,
    read by the loss).
    Returns the number of layers switched."""
    exclude: set[int] = set()
    wrapped: Any = model
    base = wrapped.get_base_model() if hasattr(wrapped, "get_base_model") else wrapped
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    switched, extra = 0, 0
    if isinstance(head, torch.nn.Linear):
        exclude.add(id(head))
        if _eligible("", head, set()):  # the loss's logits and logit gradient (train/fast_ops.py)
            int8_head = Int8Head(head.weight)
            setattr(head, "int8_head", int8_head)  # noqa: B010  (an attribute torch.nn.Module does not type)
            extra += int8_head.nbytes()
    for name, module in model.named_modules():
        if not _eligible(name, module, exclude):
            continue
        weights = Int8Weight(module.weight)
        setattr(module, "int8_weights", weights)  # noqa: B010
        module.__class__ = Int8Linear
        switched += 1
        extra += weights.nbytes()
    log.info("int8: %d frozen linear layers, %.0f MB of int8 weight copies", switched, extra / 1e6)
    return switched


def remove_int8(model: torch.nn.Module) -> int:
    """Undo :func:`install_int8`: the layers become plain ``nn.Linear`` again and the int8 copies are freed."""
    removed = 0
    for module in model.modules():
        if isinstance(getattr(module, "int8_head", None), Int8Head):
            del module.int8_head
        if type(module) is Int8Linear:
            module.__class__ = torch.nn.Linear  # type: ignore[assignment]
            del module.int8_weights
            removed += 1
    _CACHE.clear()
    return removed


INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@functools.lru_cache(maxsize=1)
def cpu_int8_supported(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8 among the flags of
    ``/proc/cpuinfo``), which run int8 products at several times the fp32 rate (this 2-core AVX512 machine:
    about 4x for the matmul alone), and PyTorch's int8 product runs and is exact here. Decided from the hardware,
    not from a timing, so the same machine always trains the same way. False elsewhere."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if not cpu_flags(text).intersection(INT8_DOT_FLAGS) or not hasattr(torch, "_int_mm"):
        return False
    a = torch.arange(-60, 60, dtype=torch.int8).reshape(8, 15)
    b = torch.arange(15 * 24, dtype=torch.int64).remainder(255).sub(127).to(torch.int8).reshape(15, 24)
    try:
        return bool(torch.equal(torch._int_mm(a, b), a.int() @ b.int()))
    except RuntimeError as exc:  # a build without the int8 CPU kernel
        log.debug("int8 matmul unavailable: %s", exc)
        return False
