"""Causal attention in query blocks on CPU, so the masked half of the score matrix is not computed.

PyTorch's CPU flash-attention kernel splits the keys into blocks of 512 and skips only whole blocks above the
diagonal, so up to about 1,000 tokens a causal attention costs as much as a full one. Here the queries are split
into four blocks and each block attends only to the keys up to its own end: the work falls to 5/8 of the full
matrix. Each block is one ``scaled_dot_product_attention`` call with the mask the model asked for (sliced to the
block), or the plain causal mask when it asked for none; every query sees exactly the keys it saw before, so the
result equals the unsplit attention up to float rounding (tested). Measured on this 2-core CPU, forward and
backward of one SmolLM2-135M layer's attention (4 x 512 tokens, 9 query and 3 key/value heads): 29.8 ms -> 26.0 ms;
at 2,048 tokens the kernel's own blocks do better, so longer (and shorter) sequences take the plain path.

Installed for a CPU training run by :func:`install_block_causal` (a model on PyTorch's ``sdpa`` attention switches
to the registered ``equitune_sdpa_blocks``, which builds its masks the ``sdpa`` way) and undone by
:func:`remove_block_causal`. Anything it does not handle (non-causal modules, attention dropout, position biases,
a cache with more keys than queries) goes to transformers' own ``sdpa`` function unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

NAME = "equitune_sdpa_blocks"
BLOCKS = 4
MIN_TOKENS, MAX_TOKENS = 256, 1024


def _sdpa_forward() -> Any:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward


def _blocked(query_len: int, key_len: int, mask: torch.Tensor | None) -> bool:
    if query_len != key_len or not MIN_TOKENS <= query_len <= MAX_TOKENS:
        return False
    return mask is None or (mask.dim() == 4 and tuple(mask.shape[-2:]) == (query_len, key_len))


def block_causal_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: (batch, heads, tokens, dim) in, (batch, tokens, heads, dim)
    out; causal self-attention of 256 to 1,024 tokens runs in query blocks, the rest as ``sdpa``."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    special = dropout or any(kwargs.get(k) is not None for k in ("position_bias", "softcap", "s_aux"))
    if (
        not causal
        or special
        or kwargs.get("output_attentions")
        or not _blocked(query.shape[2], key.shape[2], attention_mask)
    ):
        result: tuple[torch.Tensor, None] = _sdpa_forward()(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
        return result
    tokens = query.shape[2]
    gqa = query.shape[1] != key.shape[1]
    size = -(-tokens // BLOCKS)
    outputs = []
    for begin in range(0, tokens, size):
        end = min(begin + size, tokens)
        if attention_mask is not None:
            mask: torch.Tensor | None = attention_mask[:, :, begin:end, :end]
        elif begin > 0:
            positions = torch.arange(end, device=query.device)
            mask = positions[None, :] <= positions[begin:end, None]
        else:
            mask = None  # the first block is a square: the kernel's own causal mask
        outputs.append(
            F.scaled_dot_product_attention(
                query[:, :, begin:end],
                key[:, :, :end],
                value[:, :, :end],
                attn_mask=mask,
                scale=scaling,
                is_causal=mask is None,
                enable_gqa=gqa,
            )
        )
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, block_causal_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def install_block_causal(model: Any) -> bool:
    """Switch a model that runs transformers' ``sdpa`` attention to :func:`block_causal_attention`; returns
    whether it did (other attention implementations are left alone)."""
    base = _base(model)
    config = getattr(base, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(base, "set_attn_implementation"):
        return False
    _register()
    base.set_attn_implementation(NAME)
    switched = getattr(config, "_attn_implementation", None) == NAME
    if switched:
        log.info("attention: causal blocks for %d-%d tokens (the masked half is not computed)", MIN_TOKENS, MAX_TOKENS)
    return switched


def remove_block_causal(model: Any) -> bool:
    """Undo :func:`install_block_causal`: the model runs ``sdpa`` again."""
    base = _base(model)
    if getattr(getattr(base, "config", None), "_attn_implementation", None) != NAME:
        return False
    base.set_attn_implementation("sdpa")
    return True
