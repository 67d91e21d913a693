"""QLoRA on the transformers backend (CUDA): the base model loaded in 4 bits (NF4, bitsandbytes), trained with
the same LoRA loop as every other run.

bitsandbytes quantises while ``from_pretrained`` reads safetensors, so a base that resolved to a GGUF file is
first *materialised*: dequantised and rebuilt by ``load_base_model``, then saved as a Hugging Face folder under
``~/.cache/equitune/base_models/<sha256[:16]>-<size>/`` (``$XDG_CACHE_HOME`` respected). The folder is written
once per GGUF and reused; the Unsloth and MLX backends use it too, as both read Hugging Face folders. It holds
float32 weights, so it takes about 4 bytes per parameter of disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equitune.config import TrainingConfig
from equitune.errors import EquituneError
from equitune.io import atomic_write_json
from equitune.train.base_model import ResolvedBase, load_base_model

if TYPE_CHECKING:
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SOURCE_FILE = "equitune_source.json"
"""Written into a materialised folder: which GGUF it came from (its presence marks the folder complete)."""
HASH_INDEX = "gguf_hashes.json"
"""Beside the folders: sha256 of GGUF files already hashed, keyed by path, size and modification time."""
_OLLAMA_BLOB = re.compile(r"^sha256[-:]([0-9a-f]{64})$")


def default_cache_root() -> Path:
    """Where materialised base models are kept: ``$XDG_CACHE_HOME/equitune/base_models`` or ``~/.cache/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "equitune" / "base_models"


def bnb_4bit_config() -> BitsAndBytesConfig:
    """QLoRA's quantisation: 4-bit NormalFloat weights, double-quantised scales, bf16 matmuls."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


def qlora_training_config(config: TrainingConfig) -> TrainingConfig:
    """The settings the LoRA loop runs a 4-bit model with. A bitsandbytes model cannot be cast to another dtype,
    so 'auto'/'bf16' become 'fp32': the loop then casts nothing, the 4-bit layers compute in bf16 (their
    ``bnb_4bit_compute_dtype``) and the rest (norms, head, adapters) stays in float32, as
    ``prepare_model_for_kbit_training`` leaves it. 'fp16' (autocast) is kept."""
    if config.precision in ("auto", "bf16"):
        return config.model_copy(update={"precision": "fp32"})
    return config


# ------------------------------------------------------------------------------------------- GGUF -> folder


def gguf_sha256(path: Path, cache_root: Path) -> str:
    """sha256 of a GGUF file: from an Ollama blob's name (``sha256-<hex>``), from the hash index when the file is
    unchanged since it was hashed, else computed (and remembered in the index)."""
    named = _OLLAMA_BLOB.match(path.name)
    if named:
        return named.group(1)
    resolved = path.resolve()
    stat = resolved.stat()
    index_file = cache_root / HASH_INDEX
    index: dict[str, Any] = {}
    if index_file.is_file():
        try:
            loaded = json.loads(index_file.read_text(encoding="utf-8"))
            index = loaded if isinstance(loaded, dict) else {}
        except json.JSONDecodeError:
            index = {}  # a damaged index only costs a re-hash
    entry = index.get(str(resolved))
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return str(entry["sha256"])
    digest = hashlib.sha256()
    with resolved.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    sha = digest.hexdigest()
    index[str(resolved)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
    atomic_write_json(index_file, index)
    return sha


def cache_key(sha256: str, size: int) -> str:
    """The name of a materialised folder: ``<sha256[:16]>-<size in bytes>`` of the GGUF."""
    return f"{sha256[:16]}-{size}"


def materialise_gguf(resolved: ResolvedBase, cache_root: Path | None = None) -> Path:
    """A Hugging Face folder (float32 safetensors, config, tokenizer with its chat template) holding the same
    model as the GGUF ``resolved`` points to; built once per GGUF, atomically, and reused afterwards."""
    if not resolved.is_gguf:
        raise EquituneError(f"{resolved.describe()} is not a GGUF base; it needs no materialising")
    root = cache_root if cache_root is not None else default_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    gguf = Path(resolved.source)
    sha, size = gguf_sha256(gguf, root), gguf.stat().st_size
    folder = root / cache_key(sha, size)
    if (folder / SOURCE_FILE).is_file():
        log.info("reusing %s, materialised from %s", folder, resolved.source)
        return folder
    log.info("materialising %s as a Hugging Face folder in %s (once per GGUF)", resolved.source, folder)
    model, tokenizer = load_base_model(resolved, dtype="float32")
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(
            tmp / SOURCE_FILE,
            {
                "name": resolved.name,
                "route": resolved.route,
                "gguf": str(gguf.resolve()),
                "size": size,
                "sha256": sha,
                "architecture": resolved.architecture,
                "license": resolved.license,
            },
        )
        if (folder / SOURCE_FILE).is_file():  # another process finished the same folder meanwhile
            shutil.rmtree(tmp)
        else:
            if folder.exists():  # an incomplete leftover (no SOURCE_FILE)
                shutil.rmtree(folder)
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def hf_model_source(resolved: ResolvedBase, cache_root: Path | None = None) -> str:
    """What a loader that reads Hugging Face folders or repos should load: the materialised folder of a GGUF
    base, the snapshot folder of a cached repo, else the directory or repo id as resolved (a repo that is not
    cached is downloaded by the loader). Ollama names that Ollama cannot serve already resolved to the repo of
    the mapping table (``train/ollama_resolve.py``)."""
    if resolved.is_gguf:
        return str(materialise_gguf(resolved, cache_root))
    if resolved.cached and not Path(resolved.source).is_dir():
        from huggingface_hub import snapshot_download

        # a cached repo by its snapshot folder: given a repo id, transformers asks the hub even when offline
        return str(snapshot_download(resolved.source, cache_dir=resolved.cache_dir, local_files_only=True))
    return resolved.source


def name_gguf_base(model: Any, resolved: ResolvedBase) -> None:
    """Make a model loaded from a materialised folder name its GGUF (PEFT writes ``name_or_path`` into
    adapter_config.json as ``base_model_name_or_path``), so the adapter does not point into the cache."""
    if resolved.is_gguf:
        model.config._name_or_path = resolved.source
        model.name_or_path = resolved.source


# ------------------------------------------------------------------------------------------- loading


def load_qlora_model(
    resolved: ResolvedBase,
    *,
    gradient_checkpointing: bool,
    device: str | int | None = None,
    cache_root: Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model in 4 bits (``bnb_4bit_config``) on ``device`` (default: the current CUDA device), prepared
    for k-bit training (``peft.prepare_model_for_kbit_training``: weights frozen, norms and head in float32,
    input gradients for checkpointing), and its tokenizer. The loop then adds the LoRA adapters as usual."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = hf_model_source(resolved, cache_root)
    target = device if device is not None else torch.cuda.current_device()
    options: dict[str, Any] = {"cache_dir": resolved.cache_dir} if not Path(source).is_dir() else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        model = AutoModelForCausalLM.from_pretrained(
            source,
            quantization_config=bnb_4bit_config(),
            dtype=torch.bfloat16,
            device_map={"": target},
            **options,
        )
    except (OSError, ValueError, ImportError) as exc:
        raise EquituneError(f"Could not load {resolved.describe()} in 4 bits from {source}: {exc}") from exc
    name_gguf_base(model, resolved)
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    log.info("loaded %s in 4 bits (NF4, double quantisation, bf16 compute) on %s", resolved.name, target)
    return model, tokenizer
