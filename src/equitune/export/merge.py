"""Merge a trained LoRA adapter into its base model and save a plain Hugging Face model folder.

The base is loaded at float32 (a GGUF base is dequantised first), the PEFT adapter is applied and folded into
the weights with ``merge_and_unload``, and the result is written with ``save_pretrained`` (safetensors) together
with the adapter folder's tokenizer and chat template, so ``convert_hf_to_gguf.py`` can turn it into a GGUF.
The folder is written under a temporary name and renamed into place: it appears whole or not at all.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equitune.errors import EquituneError
from equitune.io import atomic_write_json

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from equitune.train.base_model import ResolvedBase

log = logging.getLogger(__name__)

MERGE_INFO_FILE = "equitune_merge.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_EMBEDDING_NAMES = ("embed_tokens", "lm_head", "wte", "embed_in", "embed_out")


def check_adapter_dir(adapter_dir: str | Path) -> Path:
    """``adapter_dir`` as a Path after checking it holds a PEFT LoRA adapter (config and weights)."""
    folder = Path(adapter_dir)
    if not folder.is_dir():
        raise EquituneError(f"Adapter folder {folder} does not exist")
    if not (folder / ADAPTER_CONFIG).is_file():
        raise EquituneError(f"{folder} is not a PEFT adapter folder: it has no {ADAPTER_CONFIG}")
    if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        raise EquituneError(f"{folder} has {ADAPTER_CONFIG} but no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    config = read_adapter_config(folder)
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise EquituneError(f"{folder} holds a {config.get('peft_type')} adapter; only LoRA adapters can be exported")
    return folder


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EquituneError(f"Cannot read {adapter_dir / ADAPTER_CONFIG}: {exc}") from exc
    if not isinstance(data, dict):
        raise EquituneError(f"{adapter_dir / ADAPTER_CONFIG} is not a JSON object")
    return data


def base_model_name(adapter_dir: str | Path) -> str:
    """The base model an adapter was trained on, as training recorded it: ``training_report.json`` beside the
    adapter folder, else ``equitune_adapter.json`` inside it. Raises when neither names one."""
    folder = Path(adapter_dir)
    for candidate in (folder.parent / "training_report.json", folder / "equitune_adapter.json"):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        name = data.get("base_model") if isinstance(data, dict) else None
        if isinstance(name, str) and name:
            return name
    raise EquituneError(
        f"Cannot tell which base model the adapter {folder} was trained on: neither "
        f"{folder.parent}/training_report.json nor {folder}/equitune_adapter.json names a base_model; "
        "pass the base model explicitly"
    )


def merge_adapter(
    adapter_dir: str | Path,
    base: str | ResolvedBase | PreTrainedModel | None,
    out_dir: str | Path,
) -> Path:
    """Merge the LoRA adapter in ``adapter_dir`` into ``base`` and save the merged model to ``out_dir``.

    ``base`` is a base-model name (resolved with ``resolve_base_model``), a ``ResolvedBase``, an already loaded
    model (copied, not modified), or None for the base recorded by training. The base runs at float32 whatever
    it was stored in; a vocabulary the tokenizer grew during training (an added pad token) is resized first;
    tied input/output embeddings stay tied unless the adapter changed one of them. Returns ``out_dir``.
    """
    import torch
    from peft import PeftModel

    adapter = check_adapter_dir(adapter_dir)
    out = Path(out_dir)
    started = time.perf_counter()
    tokenizer = _adapter_tokenizer(adapter)
    if tokenizer is None:
        raise EquituneError(f"{adapter} holds no tokenizer files; the merged model needs the training tokenizer")
    model, _base_tokenizer, base_label = _load_base(base if base is not None else base_model_name(adapter))

    vocab = _target_vocab_size(adapter, model, tokenizer)
    if vocab != model.get_input_embeddings().num_embeddings:
        log.info("resizing embeddings from %d to %d tokens to match the adapter's tokenizer",
                 model.get_input_embeddings().num_embeddings, vocab)  # fmt: skip
        torch.manual_seed(0)  # rows no adapter tensor overwrites get the same values on every merge
        model.resize_token_embeddings(vocab)

    _untie_when_one_side_is_adapted(model, read_adapter_config(adapter))
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise EquituneError(f"Cannot apply the adapter {adapter} to base model {base_label}: {exc}") from exc
    merged: Any = peft_model.merge_and_unload()
    merged.eval()
    _settle_tied_embeddings(merged)
    for parameter in merged.parameters():
        if not torch.isfinite(parameter).all():
            raise EquituneError(f"Merging {adapter} into {base_label} produced non-finite weights")

    config = merged.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = str(out)
    if getattr(config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        config.pad_token_id = tokenizer.pad_token_id

    _save_folder(
        merged,
        tokenizer,
        out,
        {
            "adapter": str(adapter.resolve()),
            "base_model": base_label,
            "vocab_size": int(vocab),
            "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
            "dtype": "float32",
        },
    )
    log.info("merged %s into %s -> %s in %.1f s", adapter, base_label, out, time.perf_counter() - started)
    return out


def save_base_model(
    base: str | ResolvedBase | PreTrainedModel,
    out_dir: str | Path,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> Path:
    """Save the plain float32 base (a GGUF base dequantised) as a Hugging Face folder, to be converted to the f16
    base GGUF that an adapter GGUF is verified on: the same weights the adapter is merged into, so llama.cpp's base +
    adapter can be compared with the PyTorch merged model exactly. ``tokenizer`` defaults to the base's own (required
    when ``base`` is a loaded model). Written atomically; returns ``out_dir``."""
    model, base_tokenizer, label = _load_base(base)
    chosen = tokenizer if tokenizer is not None else base_tokenizer
    if chosen is None:
        raise EquituneError("save_base_model needs a tokenizer when the base is given as a loaded model")
    model.config._name_or_path = str(out_dir)
    _save_folder(model, chosen, Path(out_dir), {"base_model": label, "dtype": "float32"})
    log.info("saved base model %s to %s", label, out_dir)
    return Path(out_dir)


def _save_folder(model: Any, tokenizer: Any, out: Path, info: dict[str, Any]) -> None:
    """``save_pretrained`` of model (safetensors) and tokenizer plus a provenance note, into a temporary folder
    that is renamed to ``out`` when complete."""
    from equitune.train.checkpoint import replace_dir

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / MERGE_INFO_FILE, info)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _adapter_tokenizer(adapter: Path) -> PreTrainedTokenizerBase | None:
    from transformers import AutoTokenizer

    if not any((adapter / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None
    try:
        return AutoTokenizer.from_pretrained(str(adapter))
    except (OSError, ValueError) as exc:
        raise EquituneError(f"Cannot load the tokenizer saved with the adapter {adapter}: {exc}") from exc


def _load_base(base: str | ResolvedBase | PreTrainedModel) -> tuple[Any, PreTrainedTokenizerBase | None, str]:
    """A float32 model that may be modified, the base's tokenizer when it was loaded here, and a label for logs."""
    import torch

    from equitune.train.base_model import ResolvedBase, load_base_model, resolve_base_model

    if isinstance(base, str | ResolvedBase):
        resolved = resolve_base_model(base) if isinstance(base, str) else base
        loaded, tokenizer = load_base_model(resolved, dtype="float32")
        return loaded, tokenizer, resolved.name
    if not isinstance(base, torch.nn.Module):
        raise EquituneError(f"base must be a model name, a ResolvedBase or a loaded model, not {type(base).__name__}")
    if hasattr(base, "peft_config"):
        raise EquituneError("base is a PEFT model already; pass the plain base model")
    model: Any = copy.deepcopy(base)
    torch.nn.Module.to(model, torch.float32)
    return model, None, str(getattr(base.config, "_name_or_path", "") or type(base).__name__)


def _target_vocab_size(adapter: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """Rows the embeddings need: those of embedding weights saved in the adapter, else the tokenizer's length when
    it outgrew the base, else the base's own."""
    embeddings: Any = model.get_input_embeddings()
    current = int(embeddings.num_embeddings)
    saved = _saved_embedding_rows(adapter)
    if saved is not None:
        return saved
    return max(current, len(tokenizer))


def _saved_embedding_rows(adapter: Path) -> int | None:
    """Vocabulary size of full embedding (or output) weights stored in the adapter, None when it stores none."""
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
            if "lora_" in key:
                continue
            if any(f".{name}." in key or key.endswith(f".{name}.weight") for name in _EMBEDDING_NAMES):
                return int(handle.get_slice(key).get_shape()[0])
    return None


def _untie_when_one_side_is_adapted(model: Any, adapter_config: dict[str, Any]) -> None:
    """Give the output layer its own copy of tied embeddings when the adapter changes the input or output side:
    training changed only that side, and merging into a shared tensor would change both."""
    import torch

    if not getattr(model.config, "tie_word_embeddings", False):
        return
    targets = adapter_config.get("target_modules") or []
    named = [targets] if isinstance(targets, str) else list(targets)
    named += list(adapter_config.get("modules_to_save") or [])
    if not any(any(key in str(name) for key in _EMBEDDING_NAMES) for name in named):
        return
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or embed is None or head.weight is not embed.weight:
        return
    log.info("the adapter changes the tied embeddings on one side: the merged model keeps them untied")
    head.weight = torch.nn.Parameter(embed.weight.detach().clone())
    _set_untied(model.config)


def _set_untied(config: Any) -> None:
    config.tie_word_embeddings = False
    text_config = getattr(config, "get_text_config", None)
    if callable(text_config):
        text_config().tie_word_embeddings = False


def _settle_tied_embeddings(model: Any) -> None:
    """Keep input and output embeddings tied when they still hold the same values; untie (in the config, so both
    are saved) when the adapter changed only one of them."""
    import torch

    if not getattr(model.config, "tie_word_embeddings", False):
        return
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or embed is None:
        return
    if head.weight is embed.weight:
        return
    if head.weight.shape == embed.weight.shape and torch.equal(head.weight, embed.weight):
        model.tie_weights()
        return
    log.info("the adapter changed the input and output embeddings differently: saving them untied")
    _set_untied(model.config)
