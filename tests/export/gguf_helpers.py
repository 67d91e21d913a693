"""A tiny Llama with the real SmolLM2 tokenizer and random LoRA adapters, for the GGUF export tests (imported as
``gguf_helpers``). The converter refuses BPE pre-tokenizers it does not know, hence the real tokenizer."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def converter_available() -> bool:
    """Whether llama.cpp's HF -> GGUF converter is installed where equitune looks for it."""
    from equitune.errors import EquituneError
    from equitune.export.gguf import converter_dir

    try:
        converter_dir()
    except EquituneError:
        return False
    return True


def smollm2_tokenizer() -> Any:
    """SmolLM2-135M-Instruct's tokenizer (and chat template) from the embedded GGUF, with a pad token other than
    end-of-turn as training sets it."""
    from transformers import AutoTokenizer

    from equitune.train.base_model import embedded_gguf_path
    from equitune.train.dataset import prepare_tokenizer

    path = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    prepare_tokenizer(tokenizer)
    return tokenizer


def tiny_llama(tokenizer: Any, seed: int = 0) -> Any:
    """A 2-layer Llama (hidden 64, 4 heads, 2 key/value heads, tied embeddings) over the tokenizer's vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.1,  # logits spread out, activations small enough for f16 to stay close
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


def write_random_adapter(
    base: Any,
    tokenizer: Any,
    folder: Path,
    *,
    seed: int = 0,
    std: float = 0.1,
    rank: int = 8,
    alpha: float = 16,
    targets: list[str] | None = None,
    base_model: str = "tiny",
    **lora_options: Any,
) -> Path:
    """Save a PEFT LoRA adapter for ``base`` (not modified) with random nonzero A and B, the tokenizer, and a
    training report naming ``base_model``, in the layout training leaves: ``folder/adapter`` and
    ``folder/training_report.json``. Returns the adapter folder."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets or TARGETS, task_type="CAUSAL_LM", **lora_options),
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    adapter = folder / "adapter"
    model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    (folder / "training_report.json").write_text(json.dumps({"base_model": base_model}), encoding="utf-8")
    return adapter


def peft_reference(base: Any, adapter: Path) -> Any:
    """The adapter applied to a copy of ``base`` by PEFT, unmerged: what training evaluated."""
    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(base), str(adapter)).eval()


def gguf_fields(path: Path) -> dict[str, Any]:
    """Scalar and string metadata of a GGUF file (read from the header; arrays left out)."""
    from equitune.export.gguf import read_gguf_tensor_info

    return read_gguf_tensor_info(path)[0]


def gguf_tensors(path: Path) -> dict[str, Any]:
    """{name: numpy array in GGUF (ggml-reversed) order} of a small GGUF file, read with the gguf package."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    return {t.name: np.array(t.data) for t in reader.tensors}
