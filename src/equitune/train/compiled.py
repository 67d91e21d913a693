"""``torch.compile`` for the decoder layers' training forward (``training.compile``).

On a CPU the elementwise work around the matmuls (norms, rotary embeddings, activations, the LoRA scaling and
dropout, the int8 quantisation of ``train/int8_ops.py``) is a large share of a training step when each op is a
separate pass over memory; TorchInductor fuses it into a few C++ loops. One compiled function serves every layer
of a class (the layer is an argument, its weights are inputs), so a model compiles once, plus once more with
dynamic shapes when a second sequence length arrives.

- Only the training forward is compiled: evaluation and no-grad calls run eager (no second compilation, and
  validation losses from the same code as always).
- Random ops in the layers fall back to eager kernels (``fallback_random``), so dropout masks equal those of an
  eager run and a resumed run stays identical to an uninterrupted one.
- The int8 loss's softmax and its quantisation for the logit gradient, and the sum of the gradient's block
  products (``train/fast_ops.py``), are compiled as well: a couple of fused passes over each (tokens x
  vocabulary) chunk instead of a dozen.
- A compilation failure (no C++ compiler, an op Dynamo cannot trace) is logged once and the layers run eager.
- :func:`remove_compile` restores the plain layers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from equitune.train import fast_ops
from equitune.train.distributed import decoder_layers

log = logging.getLogger(__name__)

# Models below this size (test models) gain less from fusion than the one-off compilation costs.
AUTO_MIN_PARAMETERS = 50_000_000


class _CompiledOrEager:
    """``fn`` compiled; after a failed compilation (logged once) ``eager`` for good."""

    def __init__(self, fn: Callable[..., Any], eager: Callable[..., Any], what: str, **compile_args: Any) -> None:
        self.compiled = torch.compile(fn, **compile_args)
        self.eager, self.what, self.failed = eager, what, False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as exc:  # raised while compiling, before any computation
                self.failed = True
                log.warning("torch.compile failed for %s (%s); it runs eager", self.what, str(exc).splitlines()[0])
        return self.eager(*args, **kwargs)


def _bind(layer: torch.nn.Module, eager: Callable[..., Any], compiled: _CompiledOrEager) -> Callable[..., Any]:
    """The layer's ``forward``: compiled in training with a gradient, eager otherwise."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        if layer.training and torch.is_grad_enabled():
            return compiled(layer, *args, **kwargs)
        return eager(layer, *args, **kwargs)

    forward.equitune_compiled = True  # type: ignore[attr-defined]
    return forward


def should_compile(setting: str, model: torch.nn.Module, device: torch.device, reasons_off: list[str]) -> bool:
    """Whether ``training.compile`` = ``setting`` compiles this run. ``auto``: on a CPU, for a model of at least
    ``AUTO_MIN_PARAMETERS`` parameters, when nothing in ``reasons_off`` (gradient checkpointing, fsdp, ...)
    rules it out; ``always`` compiles unless ruled out; ``never`` does not."""
    if setting == "never":
        return False
    if reasons_off:
        log.info("training.compile %s: not compiling (%s)", setting, "; ".join(reasons_off))
        return False
    if setting == "always":
        return True
    size = sum(p.numel() for p in model.parameters())
    return device.type == "cpu" and size >= AUTO_MIN_PARAMETERS


def compile_layers(model: torch.nn.Module) -> int:
    """Compile the training forward of every decoder layer of ``model``; returns the number of layers."""
    layers = decoder_layers(model)
    shared: dict[type, _CompiledOrEager] = {}
    for layer in layers:
        cls = type(layer)
        if cls not in shared:
            shared[cls] = _CompiledOrEager(
                cls.forward, cls.forward, "the decoder layers", options={"fallback_random": True}
            )
        layer.forward = _bind(layer, cls.forward, shared[cls])
    if layers:
        # Default (automatic) dynamic shapes: the row count of a loss chunk becomes dynamic once it changes, while
        # the vocabulary and block sizes stay constants (compiled as symbols, the softmax measured 2x slower).
        fast_ops.int8_loss = fast_ops.Int8LossKernels(
            softmax=_CompiledOrEager(fast_ops._softmax_blocks, fast_ops._softmax_blocks, "the loss"),
            combine=_CompiledOrEager(fast_ops._combine_blocks, fast_ops._combine_blocks, "the loss"),
        )
        log.info("torch.compile: %d decoder layers and the loss (compiled on the first training step)", len(layers))
    return len(layers)


def remove_compile(model: torch.nn.Module) -> int:
    """Undo :func:`compile_layers`: the layers' own ``forward`` again."""
    fast_ops.int8_loss = fast_ops.EAGER_INT8_LOSS
    removed = 0
    for layer in decoder_layers(model):
        if getattr(layer.__dict__.get("forward"), "equitune_compiled", False):
            del layer.forward
            removed += 1
    return removed
