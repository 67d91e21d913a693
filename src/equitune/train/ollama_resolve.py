"""Ollama's side of base-model resolution: ask a running Ollama where a model's GGUF blob lies, and map
Ollama names to the Hugging Face repositories they were built from (the fallback when Ollama cannot help).

Only the standard library is used (``urllib``), so this works without the ``ollama`` client installed and
the same code path is exercised by the tests' HTTP stand-in.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_OLLAMA_HOST = "http://localhost:11434"
SHOW_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class HFMapping:
    """The Hugging Face repository an Ollama model was built from, with what we know about it offline."""

    repo: str
    architecture: str
    license: str


_LLAMA31 = "llama3.1 (Llama 3.1 Community License)"
_LLAMA2 = "llama2 (Llama 2 Community License)"

# Ollama name -> Hugging Face repo. Ollama's bare names mean ':latest'; 'smollm2' means the 135M model here
# because equitune's embedded default is SmolLM2-135M (Ollama's own smollm2:latest is the 1.7B one).
OLLAMA_TO_HF: dict[str, HFMapping] = {
    "llama3.1": HFMapping("meta-llama/Llama-3.1-8B-Instruct", "llama", _LLAMA31),
    "llama3.1:8b": HFMapping("meta-llama/Llama-3.1-8B-Instruct", "llama", _LLAMA31),
    "llama3.1:70b": HFMapping("meta-llama/Llama-3.1-70B-Instruct", "llama", _LLAMA31),
    "llama2": HFMapping("meta-llama/Llama-2-7b-chat-hf", "llama", _LLAMA2),
    "llama2:7b": HFMapping("meta-llama/Llama-2-7b-chat-hf", "llama", _LLAMA2),
    "llama2:13b": HFMapping("meta-llama/Llama-2-13b-chat-hf", "llama", _LLAMA2),
    "llama2:70b": HFMapping("meta-llama/Llama-2-70b-chat-hf", "llama", _LLAMA2),
    "mistral": HFMapping("mistralai/Mistral-7B-Instruct-v0.3", "mistral", "apache-2.0"),
    "mistral:7b": HFMapping("mistralai/Mistral-7B-Instruct-v0.3", "mistral", "apache-2.0"),
    "smollm2": HFMapping("HuggingFaceTB/SmolLM2-135M-Instruct", "llama", "apache-2.0"),
    "smollm2:135m": HFMapping("HuggingFaceTB/SmolLM2-135M-Instruct", "llama", "apache-2.0"),
    "smollm2:360m": HFMapping("HuggingFaceTB/SmolLM2-360M-Instruct", "llama", "apache-2.0"),
    "smollm2:1.7b": HFMapping("HuggingFaceTB/SmolLM2-1.7B-Instruct", "llama", "apache-2.0"),
    "qwen2.5": HFMapping("Qwen/Qwen2.5-7B-Instruct", "qwen2", "apache-2.0"),
    "qwen2.5:0.5b": HFMapping("Qwen/Qwen2.5-0.5B-Instruct", "qwen2", "apache-2.0"),
    "qwen2.5:1.5b": HFMapping("Qwen/Qwen2.5-1.5B-Instruct", "qwen2", "apache-2.0"),
    "qwen2.5:3b": HFMapping("Qwen/Qwen2.5-3B-Instruct", "qwen2", "qwen-research (Qwen Research License)"),
    "qwen2.5:7b": HFMapping("Qwen/Qwen2.5-7B-Instruct", "qwen2", "apache-2.0"),
}

# Tag suffixes that only say "instruction-tuned" or "quantised like this": 'llama3.1:8b-instruct-q4_K_M'
# is still llama3.1:8b. Base ('-text') variants are deliberately not stripped: they are other weights.
_NEUTRAL_TAG_PART = re.compile(r"^(instruct|chat|q\d\w*|iq\d\w*|f16|fp16|bf16|f32|fp32)$")


def mapping_for(name: str) -> tuple[str, HFMapping] | None:
    """The mapping-table entry for an Ollama name (case-insensitive, ':latest' ignored, instruct and
    quantisation suffixes of the tag ignored), as ``(matched key, mapping)``; None when unknown."""
    key = name.strip().lower()
    key = key.removesuffix(":latest")
    if key in OLLAMA_TO_HF:
        return key, OLLAMA_TO_HF[key]
    base, sep, tag = key.partition(":")
    if sep and "-" in tag:
        size, *rest = tag.split("-")
        if all(_NEUTRAL_TAG_PART.match(part) for part in rest):
            short = f"{base}:{size}"
            if short in OLLAMA_TO_HF:
                return short, OLLAMA_TO_HF[short]
    return None


def default_ollama_host() -> str:
    """``OLLAMA_HOST`` from the environment (as Ollama reads it) or http://localhost:11434."""
    return normalise_host(os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST)


def normalise_host(host: str) -> str:
    """Turn Ollama's host forms ('0.0.0.0', 'localhost:11434', 'http://h:p/') into a base URL."""
    value = host.strip().rstrip("/")
    if "://" not in value:
        value = f"http://{value}"
    scheme, _, rest = value.partition("://")
    hostport = rest.split("/", 1)[0]
    has_port = "]:" in hostport if hostport.startswith("[") else ":" in hostport  # [::1]:port for IPv6
    if not has_port:
        rest = rest.replace(hostport, f"{hostport}:11434", 1)
    # 0.0.0.0 is where a server listens, not an address to connect to
    rest = rest.replace("0.0.0.0", "127.0.0.1", 1)
    return f"{scheme}://{rest}"


@dataclass(frozen=True)
class OllamaModel:
    """What Ollama's ``/api/show`` says about a model."""

    name: str
    from_value: str | None
    """The value of the Modelfile's first FROM line (for a pulled model: the path of its GGUF blob)."""
    architecture: str | None
    license: str | None


class OllamaUnavailable(Exception):
    """Ollama could not answer (not running, timed out, server error); the message says why."""


class OllamaModelNotFound(Exception):
    """Ollama answered that it does not have the model."""


def ollama_show(name: str, host: str, timeout: float = SHOW_TIMEOUT_S) -> OllamaModel:
    """POST ``{"model": name}`` to ``host/api/show`` and extract the blob path, architecture and license.

    Raises ``OllamaModelNotFound`` on a 404 and ``OllamaUnavailable`` when Ollama is not reachable or
    answers something unusable.
    """
    body = json.dumps({"model": name}).encode("utf-8")
    request = urllib.request.Request(
        f"{host}/api/show", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        message = _error_message(exc)
        if exc.code == 404:
            raise OllamaModelNotFound(message or f"model '{name}' not found") from None
        raise OllamaUnavailable(f"answered HTTP {exc.code}{f': {message}' if message else ''}") from None
    except urllib.error.URLError as exc:
        raise OllamaUnavailable(f"not reachable ({_reason(exc.reason)})") from None
    except (TimeoutError, ConnectionError) as exc:
        raise OllamaUnavailable(f"not reachable ({_reason(exc)})") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OllamaUnavailable("gave an answer to /api/show that is not JSON") from None
    if not isinstance(data, dict):
        raise OllamaUnavailable("gave an answer to /api/show that is not a JSON object")
    return OllamaModel(
        name=name,
        from_value=parse_from_line(str(data.get("modelfile") or "")),
        architecture=_architecture(data),
        license=_license(data.get("license")),
    )


def parse_from_line(modelfile: str) -> str | None:
    """The value of a Modelfile's first ``FROM`` instruction (quotes removed), or None."""
    for line in modelfile.splitlines():
        keyword, _, value = line.strip().partition(" ")
        if keyword.upper() == "FROM" and value.strip():
            return value.strip().strip('"').strip("'")
    return None


def blob_file(from_value: str) -> Path | None:
    """The local file a FROM value names, or None when it is not a path on this machine. Ollama's docs
    print blob paths as ``.../blobs/sha256:<hex>`` while the files on disk are ``sha256-<hex>``."""
    candidates = [Path(from_value).expanduser()]
    if "sha256:" in from_value:
        candidates.append(Path(from_value.replace("sha256:", "sha256-")).expanduser())
    for path in candidates:
        if path.is_absolute() and path.is_file():
            return path
    return None


def _architecture(data: dict[str, Any]) -> str | None:
    info = data.get("model_info")
    if isinstance(info, dict) and isinstance(info.get("general.architecture"), str):
        return str(info["general.architecture"])
    details = data.get("details")
    if isinstance(details, dict) and isinstance(details.get("family"), str):
        return str(details["family"])
    return None


def _license(value: Any) -> str | None:
    if isinstance(value, list):
        value = "\n\n".join(str(v) for v in value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return ""
    return str(payload.get("error", "")) if isinstance(payload, dict) else ""


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    return str(reason) or type(reason).__name__
