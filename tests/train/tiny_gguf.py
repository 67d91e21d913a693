"""The tiny model of ``tiny.py`` written as a float32 GGUF file (the layout llama.cpp's converter writes), so the
GGUF routes can be tested in well under a second instead of with the real embedded model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tiny

_GLOBAL = {"model.embed_tokens.weight": "token_embd", "model.norm.weight": "output_norm", "lm_head.weight": "output"}
_PER_LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _permute(weight: Any, heads: int) -> Any:
    # llama.cpp orders the rotary halves of q and k differently; transformers undoes this on load
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def write_tiny_gguf(path: Path, seed: int = 0) -> tuple[Any, Any]:
    """Write the tiny Llama (weights from ``seed``) and its tokenizer to ``path``; returns (model, tokenizer)."""
    import gguf
    import numpy as np

    tokenizer = tiny.make_tokenizer()
    model = tiny.make_model(len(tokenizer), seed)
    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    tokens = [""] * len(tokenizer)
    for token, index in spec["model"]["vocab"].items():
        tokens[index] = token
    special = {added["id"] for added in spec["added_tokens"]}
    for added in spec["added_tokens"]:
        tokens[added["id"]] = added["content"]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in special else 1 for i in range(len(tokens))])  # 3 = control, 1 = normal
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)

    for name, tensor in model.state_dict().items():
        array = tensor.detach().float().numpy()
        if name in _GLOBAL:
            gguf_name = _GLOBAL[name]
        else:
            parts = name.split(".")  # model.layers.<i>.<module...>.weight
            module = ".".join(parts[3:-1])
            gguf_name = f"blk.{parts[2]}.{_PER_LAYER[module]}"
            if module == "self_attn.q_proj":
                array = _permute(array, config.num_attention_heads)
            elif module == "self_attn.k_proj":
                array = _permute(array, config.num_key_value_heads)
        writer.add_tensor(f"{gguf_name}.weight", np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model, tokenizer
