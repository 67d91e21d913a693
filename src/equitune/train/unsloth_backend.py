"""The Unsloth backend (CUDA): Unsloth loads the base and adds its LoRA adapters, equitune's loop trains them.

``FastLanguageModel.from_pretrained`` and ``FastLanguageModel.get_peft_model`` get the keyword arguments of
``unsloth_arguments`` (``train/backends.py``); the model is then trained by ``equitune.train.loop.train`` like
any other, so the output folder is the same as the transformers backend's. Unsloth reads Hugging Face folders and
repos, so a base that resolved to a GGUF file is materialised first (``train/qlora.py``).

A model Unsloth has already wrapped is trained as it is (``loop.wrap_lora`` leaves a ``PeftModel`` alone).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from equitune.config import EquituneConfig, TrainingConfig
from equitune.train.backends import unsloth_arguments
from equitune.train.base_model import ResolvedBase
from equitune.train.qlora import hf_model_source, name_gguf_base

log = logging.getLogger(__name__)


def load_unsloth(
    resolved: ResolvedBase,
    config: EquituneConfig,
    *,
    four_bit: bool,
    init_adapter: Path | None = None,
    cache_root: Path | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, arguments used) from Unsloth. With ``init_adapter`` (continued training) the model is
    returned without adapters, and the loop loads the finished ones onto it; otherwise Unsloth adds new ones."""
    from unsloth import FastLanguageModel

    source = hf_model_source(resolved, cache_root)
    load_kwargs, peft_kwargs = unsloth_arguments(config.training, config.lora_config, source, four_bit)
    log.info("loading %s with Unsloth (%s)", resolved.name, "4-bit" if four_bit else "16-bit")
    model, tokenizer = FastLanguageModel.from_pretrained(**load_kwargs)
    name_gguf_base(model, resolved)
    if init_adapter is None:
        model = FastLanguageModel.get_peft_model(model, **peft_kwargs)
    else:
        log.info("continuing from %s: its adapters are loaded onto the Unsloth model by the loop", init_adapter)
    return model, tokenizer, {"from_pretrained": load_kwargs, "get_peft_model": peft_kwargs}


def unsloth_training_config(config: TrainingConfig, *, wrapped: bool) -> TrainingConfig:
    """The settings the loop trains an Unsloth model with. Unsloth chose the base's dtype (bf16/fp16, or 4 bits),
    so the loop casts nothing ('fp32': no cast, no autocast; PEFT keeps the adapters in float32) and compiles
    nothing (Unsloth brings its own kernels); and when Unsloth
    added the adapters it also set up its own gradient checkpointing, which the loop must not enable again."""
    update: dict[str, Any] = {"precision": "fp32", "compile": "never"}
    if wrapped:
        update["gradient_checkpointing"] = False
    return config.model_copy(update=update)
