"""Write a PEFT LoRA adapter as a llama.cpp LoRA adapter GGUF (what Ollama's ``ADAPTER`` line loads).

The layout is the one llama.cpp's ``convert_lora_to_gguf.py`` writes and ``llama_adapter_lora_init`` reads:

- metadata ``general.architecture`` (the base model's, e.g. ``llama``), ``general.type = "adapter"``,
  ``adapter.type = "lora"`` and ``adapter.lora.alpha``; llama.cpp scales each pair by ``alpha / rank`` with the rank
  read from the tensors;
- for every adapted weight ``W`` (named as the base GGUF names it, ``blk.N.attn_q.weight``) two tensors
  ``<name>.lora_a`` = PEFT's ``lora_A`` (rank x in; ggml shape [in, rank]) and ``<name>.lora_b`` = PEFT's ``lora_B``
  (out x rank; ggml shape [rank, out]), so that ``W' = W + scale * B @ A``;
- the same row permutation the converter applies to the base weights: for Llama-family models
  ``convert_hf_to_gguf.py`` reorders the rows of ``q_proj`` and ``k_proj`` per head (transformers' rotary
  convention -> llama.cpp's), so ``B @ A`` must be reordered the same way, which is a reordering of ``lora_b``'s rows.

Written in-process with the ``gguf`` distribution's ``GGUFWriter``; the tensor names come from its tensor-name map.
Scaling that llama.cpp cannot express with one alpha (rsLoRA, per-module ``alpha_pattern``) is folded into
``lora_b``, so the adapter computes exactly what PEFT computes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equitune.errors import EquituneError
from equitune.export.merge import check_adapter_dir, read_adapter_config

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _ArchRule:
    gguf_arch: str
    """``general.architecture`` in the GGUF (a key of gguf.MODEL_ARCH_NAMES' values)."""
    permute_qk: bool
    """Whether convert_hf_to_gguf.py permutes the rows of q_proj/k_proj for this architecture."""


# Hugging Face architecture -> what convert_hf_to_gguf.py does with it (conversion/llama.py, qwen.py).
_ARCHITECTURES: dict[str, _ArchRule] = {
    "LlamaForCausalLM": _ArchRule("llama", True),
    "MistralForCausalLM": _ArchRule("llama", True),
    "Qwen2ForCausalLM": _ArchRule("qwen2", False),
    "Qwen3ForCausalLM": _ArchRule("qwen3", False),
}
_EMBEDDING_KEYS = ("embed_tokens", "lm_head", "wte", "embed_in", "embed_out")
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[\w-]+)?\.weight$")


def supported_architectures() -> tuple[str, ...]:
    """The Hugging Face architectures ``write_adapter_gguf`` knows the GGUF layout of."""
    return tuple(_ARCHITECTURES)


def write_adapter_gguf(
    adapter_dir: str | Path,
    base_config: str | Path | Mapping[str, Any] | Any,
    out_path: str | Path,
    *,
    outtype: str = "f32",
) -> Path:
    """Write the LoRA adapter in ``adapter_dir`` as a llama.cpp adapter GGUF at ``out_path``.

    ``base_config`` describes the base model the adapter was trained on: a model folder (or its config.json), a
    transformers ``PretrainedConfig`` or a config dict; it gives the architecture, head counts and layer count. The
    LoRA tensors are written as f32 (default) or f16. Raises ``EquituneError`` for what a llama.cpp adapter cannot
    hold (DoRA, trained embeddings or output layer stored whole, LoRA on a tied output layer, biases). Returns the
    path written; the file appears by atomic rename.
    """
    import gguf
    import numpy as np

    adapter = check_adapter_dir(adapter_dir)
    target = Path(out_path)
    if outtype not in ("f32", "f16"):
        raise EquituneError(f"Adapter GGUF tensors are written as f32 or f16, not '{outtype}'")
    started = time.perf_counter()
    lora_config = read_adapter_config(adapter)
    _check_lora_config(adapter, lora_config)
    hparams = _base_hparams(base_config)
    architecture = _first_architecture(hparams)
    rule = _ARCHITECTURES.get(architecture)
    if rule is None:
        raise EquituneError(
            f"Cannot write a llama.cpp adapter for architecture {architecture}: equitune knows the GGUF layout of "
            f"{', '.join(_ARCHITECTURES)}; export a merged GGUF instead"
        )
    nested = hparams.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else hparams
    n_layers = int(text["num_hidden_layers"])
    n_head = int(text["num_attention_heads"])
    n_head_kv = int(text.get("num_key_value_heads") or n_head)
    tied = bool(hparams.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))

    arch_enum = _gguf_arch(gguf, rule.gguf_arch)
    name_map = gguf.get_tensor_name_map(arch_enum, n_layers)
    pairs = _lora_pairs(adapter)
    alpha = float(lora_config["lora_alpha"])
    use_rslora = bool(lora_config.get("use_rslora", False))
    alpha_pattern: dict[str, float] = {k: float(v) for k, v in (lora_config.get("alpha_pattern") or {}).items()}

    tensors: list[tuple[str, np.ndarray]] = []
    for module in sorted(pairs, key=_module_order):
        a, b = pairs[module]
        hf_name = module.removeprefix("base_model.model.")
        if tied and hf_name.split(".")[-1] in ("lm_head",):
            raise EquituneError(
                f"The adapter {adapter} has LoRA on {hf_name}, which this base ties to the input embeddings; "
                "llama.cpp cannot apply it (llama.cpp issue 9065). Export a merged GGUF instead"
            )
        gguf_name = name_map.get_name(f"{hf_name}.weight", try_suffixes=(".weight",))
        if gguf_name is None:
            raise EquituneError(f"No GGUF tensor name for the adapted module {hf_name} of architecture {architecture}")
        rank = a.shape[0]
        if a.ndim != 2 or b.ndim != 2 or b.shape[1] != rank:
            shapes = f"A{list(a.shape)} B{list(b.shape)}"
            raise EquituneError(f"{adapter}: {module} has LoRA shapes {shapes} that do not pair")
        # llama.cpp scales by alpha / rank; fold anything else PEFT does into lora_b
        module_alpha = _pattern_value(alpha_pattern, hf_name, alpha)
        peft_scale = module_alpha / math.sqrt(rank) if use_rslora else module_alpha / rank
        b = b * np.float32(peft_scale / (alpha / rank)) if not math.isclose(peft_scale, alpha / rank) else b
        leaf = hf_name.split(".")[-1]
        if rule.permute_qk and leaf == "q_proj":
            b = permute_rows(b, n_head)
        elif rule.permute_qk and leaf == "k_proj":
            b = permute_rows(b, n_head_kv)
        dtype = np.float32 if outtype == "f32" else np.float16
        tensors.append((f"{gguf_name}.lora_a", np.ascontiguousarray(a, dtype=dtype)))
        tensors.append((f"{gguf_name}.lora_b", np.ascontiguousarray(b, dtype=dtype)))
    if not tensors:
        raise EquituneError(f"{adapter} holds no LoRA tensors")

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        writer = gguf.GGUFWriter(str(tmp), rule.gguf_arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(adapter.parent.name if adapter.name == "adapter" else adapter.name)
        for name, array in tensors:
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info(
        "wrote LoRA adapter GGUF %s (%d tensors, alpha %g, %.1f MB) in %.1f s",
        target,
        len(tensors),
        alpha,
        target.stat().st_size / 1e6,
        time.perf_counter() - started,
    )
    return target


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a q/k projection (or its ``lora_b``) per head from transformers' rotary layout (first
    half of each head's dimensions, then second half) to llama.cpp's interleaved one, as convert_hf_to_gguf.py does."""
    rows = weight.shape[0]
    if rows % (2 * n_head):
        raise EquituneError(f"Cannot permute {rows} rows over {n_head} heads: not a multiple of {2 * n_head}")
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape).copy()


def _check_lora_config(adapter: Path, config: Mapping[str, Any]) -> None:
    if config.get("use_dora"):
        raise EquituneError(f"{adapter} is a DoRA adapter; llama.cpp adapters hold plain LoRA only: export merged")
    if str(config.get("bias", "none")) != "none":
        raise EquituneError(f"{adapter} trains biases (bias={config.get('bias')}); llama.cpp adapters cannot hold them")
    if config.get("fan_in_fan_out"):
        raise EquituneError(f"{adapter} uses fan_in_fan_out (Conv1D layers); not supported for adapter GGUF export")
    if "lora_alpha" not in config or "r" not in config:
        raise EquituneError(f"{adapter / 'adapter_config.json'} lacks r or lora_alpha")


def _base_hparams(base_config: str | Path | Mapping[str, Any] | Any) -> dict[str, Any]:
    if isinstance(base_config, str | Path):
        path = Path(base_config)
        file = path / "config.json" if path.is_dir() else path
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise EquituneError(f"Cannot read the base model's config {file}: {exc}") from exc
        if not isinstance(data, dict):
            raise EquituneError(f"{file} is not a JSON object")
        return data
    if isinstance(base_config, Mapping):
        return dict(base_config)
    to_dict = getattr(base_config, "to_dict", None)
    if callable(to_dict):
        data = to_dict()
        if isinstance(data, dict):
            return data
    raise EquituneError(
        f"base_config must be a folder, a config.json, a dict or a PretrainedConfig, not {type(base_config).__name__}"
    )


def _first_architecture(hparams: Mapping[str, Any]) -> str:
    text = hparams.get("text_config")
    for source in (text if isinstance(text, Mapping) else {}, hparams):
        architectures = source.get("architectures")
        if isinstance(architectures, list) and architectures:
            return str(architectures[0])
    model_type = hparams.get("model_type")
    by_type = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
               "qwen3": "Qwen3ForCausalLM"}  # fmt: skip
    if isinstance(model_type, str) and model_type in by_type:
        return by_type[model_type]
    raise EquituneError("The base model's config names no architecture (no 'architectures' or known 'model_type')")


def _gguf_arch(gguf: Any, name: str) -> Any:
    for arch, arch_name in gguf.MODEL_ARCH_NAMES.items():
        if arch_name == name:
            return arch
    raise EquituneError(f"The installed gguf package ({gguf.__file__}) has no architecture '{name}'")


def _lora_pairs(adapter: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{module name: (lora_A, lora_B)} as float32 arrays; raises for tensors a llama.cpp adapter cannot hold."""
    weights = adapter / "adapter_model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        state = load_file(str(weights), device="cpu")
    else:
        import torch

        state = torch.load(adapter / "adapter_model.bin", map_location="cpu", weights_only=True)
    halves: dict[str, dict[str, Any]] = {}
    for key, tensor in state.items():
        match = _LORA_KEY.match(key)
        if match is None:
            if ".base_layer." in key:  # the frozen base weight PEFT saves beside LoRA on embedding layers
                continue
            if "lora_embedding_" in key:
                raise EquituneError(
                    f"{adapter} has LoRA on the token embeddings ({key}); the adapter GGUF route does not support "
                    "it: export a merged GGUF instead"
                )
            if any(f".{name}." in key or key.endswith(f".{name}.weight") for name in _EMBEDDING_KEYS):
                raise EquituneError(
                    f"{adapter} stores whole embedding or output weights ({key}), e.g. because the vocabulary "
                    "grew during training; a llama.cpp LoRA adapter cannot carry them: export a merged GGUF instead"
                )
            raise EquituneError(f"{adapter} holds {key}, which is not a LoRA A/B matrix; cannot write an adapter GGUF")
        halves.setdefault(match["module"], {})[match["which"]] = tensor.detach().float().numpy()
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for module, found in halves.items():
        if set(found) != {"A", "B"}:
            raise EquituneError(f"{adapter}: {module} has lora_{''.join(found)} but not both lora_A and lora_B")
        pairs[module] = (found["A"], found["B"])
    return pairs


def _module_order(module: str) -> tuple[int, str]:
    match = re.search(r"\.layers\.(\d+)\.", module)
    return (int(match.group(1)) if match else -1, module)


def _pattern_value(patterns: Mapping[str, float], module: str, default: float) -> float:
    """PEFT's per-module override: the first pattern that names the module (by suffix, or as a regex)."""
    for pattern, value in patterns.items():
        if module == pattern or module.endswith(f".{pattern}") or re.fullmatch(f"(.*\\.)?{pattern}", module):
            return value
    return default
