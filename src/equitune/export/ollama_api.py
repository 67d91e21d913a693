"""Registering a fine-tuned model with Ollama through its official Python client, and the thin wrappers around
Ollama's model API (reachable?, list, show, delete).

``create_model`` validates the name first (Ollama's ``types/model/name.go`` rules), uploads each GGUF as a blob
addressed by its sha256 digest (``HEAD /api/blobs/<digest>`` first, so a file Ollama already holds is not sent
again), then calls ``/api/create`` with ``files``/``adapters`` mapping file names to digests and reports every
progress status until ``success``. An Ollama that cannot be reached raises ``OllamaUnreachable`` (carrying the
host) so the caller can fall back to printing ``offline_instructions``; an error Ollama answers raises
``OllamaAPIError`` with its HTTP status and message.

The ``ollama`` package (``pip install 'equitune[serve]'``) is imported only inside the calls that need it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shlex
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equitune.errors import EquituneError
from equitune.export.modelfile import ModelfileError, ModelfileSpec, parse_modelfile, validate_parameter
from equitune.train.ollama_resolve import default_ollama_host, normalise_host

if TYPE_CHECKING:
    import ollama
    from rich.console import Console

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "equity_research_llama"
ADAPTERS_UNSUPPORTED = "LoRA adapters are no longer supported"
_HASH_CHUNK = 1 << 20


class OllamaError(EquituneError):
    """Talking to Ollama failed; the message names the host and what was being done."""


class OllamaUnreachable(OllamaError):
    """No Ollama answers at ``host`` (connection refused, unknown host, timed out)."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"Ollama is not reachable at {host} ({reason})")


class OllamaAPIError(OllamaError):
    """Ollama answered with an error: ``status_code`` (None for an error line inside a stream) and ``message``."""

    def __init__(self, host: str, operation: str, message: str, status_code: int | None = None) -> None:
        self.host = host
        self.operation = operation
        self.message = message
        self.status_code = status_code
        status = f"HTTP {status_code}" if status_code is not None else "an error"
        super().__init__(f"Ollama at {host} answered {status} to {operation}: {message}")


class OllamaAdaptersUnsupported(OllamaAPIError):
    """This Ollama refuses LoRA adapters (removed in recent releases); export a merged GGUF instead."""


class ModelNameError(EquituneError, ValueError):
    """A model name breaks Ollama's naming rules; the message names the part and the rule."""


# ------------------------------------------------------------------------------------------- names


@dataclass(frozen=True)
class ModelName:
    """An Ollama model name split into its parts; missing parts are empty (Ollama fills registry.ollama.ai,
    library and latest)."""

    host: str
    namespace: str
    model: str
    tag: str

    @property
    def tag_or_default(self) -> str:
        return self.tag or "latest"

    def same_model(self, other: ModelName) -> bool:
        """Same host, namespace and model (case-insensitive, defaults filled), whatever the tags."""
        return (
            (self.host or "registry.ollama.ai").lower() == (other.host or "registry.ollama.ai").lower()
            and (self.namespace or "library").lower() == (other.namespace or "library").lower()
            and self.model.lower() == other.model.lower()
        )

    def __str__(self) -> str:
        prefix = "".join(f"{part}/" for part in (self.host, self.namespace) if part)
        return f"{prefix}{self.model}{':' + self.tag if self.tag else ''}"


_PART_RULES = {
    # part: (allowed after the first character, maximum length)
    "host": ("letters, digits, '_', '-', '.' and ':'", 350),
    "namespace": ("letters, digits, '_' and '-'", 80),
    "model": ("letters, digits, '_', '-' and '.'", 80),
    "tag": ("letters, digits, '_', '-' and '.'", 80),
}
_PART_PATTERNS = {
    "host": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*"),
    "namespace": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*"),
    "model": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"),
    "tag": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"),
}


def parse_model_name(name: str) -> ModelName:
    """Split ``[host/][namespace/]model[:tag]`` as Ollama's ``ParseNameBare`` does and check every part;
    ``ModelNameError`` names the first bad part and its rule."""
    s, tag, namespace, host = name, "", "", ""
    if s.rfind(":") > s.rfind("/"):
        s, _, tag = s.rpartition(":")
        if not tag:
            _bad(name, "tag", tag)
    if "/" in s:
        s, _, model = s.rpartition("/")
        if "/" in s:
            s, _, namespace = s.rpartition("/")
            scheme, sep, rest = s.partition("://")
            host = rest if sep else scheme
            if not host:
                _bad(name, "host", host)
        else:
            namespace = s
        if not namespace:
            _bad(name, "namespace", namespace)
    else:
        model = s
    parts = {"host": host, "namespace": namespace, "model": model, "tag": tag}
    for part, value in parts.items():
        if part != "model" and not value:
            continue  # filled with Ollama's default
        if not _PART_PATTERNS[part].fullmatch(value) or len(value) > _PART_RULES[part][1]:
            _bad(name, part, value)
    return ModelName(host, namespace, model, tag)


def _bad(name: str, part: str, value: str) -> None:
    allowed, longest = _PART_RULES[part]
    shown = f"the {part} part {value!r}" if value else f"the {part} part (empty)"
    raise ModelNameError(
        f"Invalid Ollama model name {name!r}: {shown} must be 1-{longest} characters, start with a letter, digit "
        f"or '_', and contain only {allowed} (form: [host/][namespace/]model[:tag])"
    )


def validate_model_name(name: str) -> str:
    """``name`` unchanged when Ollama accepts it, else ``ModelNameError`` naming the rule it breaks."""
    parse_model_name(name)
    return name


def next_version_tag(existing_tags: Iterable[str]) -> str:
    """The next ``vN`` tag after the highest ``vN`` among ``existing_tags`` (``v1`` when there is none)."""
    numbers = [int(m.group(1)) for t in existing_tags if (m := re.fullmatch(r"[vV](\d+)", t))]
    return f"v{max(numbers, default=0) + 1}"


def model_tags(name: str, models: Iterable[str]) -> list[str]:
    """The tags that ``models`` (as ``list_models`` returns them) hold for the model called ``name``."""
    wanted = parse_model_name(name)
    tags = []
    for listed in models:
        try:
            parsed = parse_model_name(listed)
        except ModelNameError:
            continue
        if parsed.same_model(wanted):
            tags.append(parsed.tag_or_default)
    return tags


def next_version_name(name: str, models: Iterable[str]) -> str:
    """``name`` with the next ``vN`` tag, given the models Ollama already has (``equity_research_llama:v3``)."""
    parsed = parse_model_name(name)
    base = str(ModelName(parsed.host, parsed.namespace, parsed.model, ""))
    return f"{base}:{next_version_tag(model_tags(base, models))}"


# ------------------------------------------------------------------------------------------- HTTP helpers


def resolve_host(host: str | None) -> str:
    """A base URL for ``host``, or for ``OLLAMA_HOST`` / http://localhost:11434 when None."""
    return normalise_host(host) if host else default_ollama_host()


def ollama_client(host: str, timeout: float | None = None) -> ollama.Client:
    """The official client for the base URL ``host`` (``OllamaError`` when the package is missing)."""
    try:
        import ollama
    except ImportError:
        raise OllamaError("Talking to Ollama needs the ollama package: pip install 'equitune[serve]'") from None
    return ollama.Client(host=host, timeout=timeout)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower():
        return "connection refused"
    if isinstance(reason, TimeoutError) or "timed out" in str(reason).lower():
        return "timed out"
    if type(reason) is ConnectionError:  # the client's own "Failed to connect to Ollama..."
        return "could not connect"
    return str(reason) or type(reason).__name__


def _is_connect_error(exc: BaseException) -> bool:
    """A failure to reach the server at all (as opposed to an error it answered)."""
    if isinstance(exc, ConnectionError):  # what the client raises for httpx.ConnectError outside streams
        return True
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx comes with ollama
        return False
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))


def translate_error(exc: BaseException, host: str, operation: str) -> OllamaError:
    """The equitune error for an exception the ollama client raised (one of ``client_errors()``)."""
    import ollama

    if isinstance(exc, ollama.ResponseError):
        status = exc.status_code if exc.status_code > 0 else None
        cls = OllamaAdaptersUnsupported if ADAPTERS_UNSUPPORTED in str(exc.error) else OllamaAPIError
        return cls(host, operation, str(exc.error), status)
    if _is_connect_error(exc):
        return OllamaUnreachable(host, _reason(exc))
    return OllamaError(f"Ollama at {host} failed during {operation}: {type(exc).__name__}: {exc}")


def client_errors() -> tuple[type[BaseException], ...]:
    """The exceptions the ollama client raises: server errors, connection failures, transport errors."""
    import httpx
    import ollama

    return (ollama.ResponseError, ConnectionError, httpx.HTTPError)


def _get(host: str, path: str, timeout: float, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(f"{host}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read() or b""
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise OllamaUnreachable(host, _reason(exc)) from None


def _error_text(body: bytes) -> str:
    try:
        payload = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body.decode("utf-8", "replace").strip()
    return str(payload.get("error", "")) if isinstance(payload, dict) else ""


# ------------------------------------------------------------------------------------------- wrappers


def server_version(host: str | None = None, timeout: float = 3.0) -> str:
    """Ollama's version (``GET /api/version``); ``OllamaUnreachable`` when nothing answers."""
    base = resolve_host(host)
    status, body = _get(base, "/api/version", timeout)
    if status != 200:
        raise OllamaAPIError(base, "GET /api/version", _error_text(body) or "no version", status)
    try:
        return str(json.loads(body)["version"])
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise OllamaError(f"{base} answered /api/version with something that is not Ollama's") from None


def is_reachable(host: str | None = None, timeout: float = 2.0) -> bool:
    """Whether an Ollama answers ``GET /api/version`` at ``host`` within ``timeout`` seconds."""
    try:
        server_version(host, timeout)
    except OllamaError:
        return False
    return True


def list_models(host: str | None = None, timeout: float | None = 30.0) -> list[str]:
    """The names (``model:tag``) of the models Ollama has."""
    base = resolve_host(host)
    client = ollama_client(base, timeout)
    try:
        response = client.list()
    except client_errors() as exc:
        raise translate_error(exc, base, "list models") from exc
    return [str(m.model) for m in response.models if m.model]


@dataclass(frozen=True)
class ShownModel:
    """What ``/api/show`` says about a model."""

    name: str
    modelfile: str
    template: str
    parameters: str
    license: str
    system: str | None
    family: str | None


def show_model(name: str, host: str | None = None, timeout: float | None = 30.0) -> ShownModel:
    """``/api/show`` for ``name``; an unknown model is ``OllamaAPIError`` with status 404."""
    validate_model_name(name)
    base = resolve_host(host)
    client = ollama_client(base, timeout)
    try:
        response = client.show(name)
    except client_errors() as exc:
        raise translate_error(exc, base, f"show {name}") from exc
    system = None
    if response.modelfile:
        try:
            system = parse_modelfile(response.modelfile).system
        except ModelfileError:
            system = None
    return ShownModel(
        name=name,
        modelfile=response.modelfile or "",
        template=response.template or "",
        parameters=response.parameters or "",
        license=response.license or "",
        system=system,
        family=response.details.family if response.details else None,
    )


def delete_model(name: str, host: str | None = None, timeout: float | None = 30.0) -> None:
    """Delete ``name`` from Ollama; an unknown model is ``OllamaAPIError`` with status 404."""
    validate_model_name(name)
    base = resolve_host(host)
    client = ollama_client(base, timeout)
    try:
        client.delete(name)
    except client_errors() as exc:
        raise translate_error(exc, base, f"delete {name}") from exc


def offline_instructions(name: str, modelfile_path: str | Path) -> str:
    """The command that registers the model by hand once Ollama runs: ``ollama create NAME -f PATH/Modelfile``."""
    validate_model_name(name)
    path = Path(modelfile_path)
    if path.is_dir():
        path = path / "Modelfile"
    return f"ollama create {shlex.quote(name)} -f {shlex.quote(str(path))}"


# ------------------------------------------------------------------------------------------- create


@dataclass(frozen=True)
class CreateProgress:
    """One progress report: a status line from Ollama (or from the upload), with byte counts when known."""

    status: str
    digest: str | None = None
    completed: int | None = None
    total: int | None = None
    file: str | None = None  # the local file being hashed or uploaded


ProgressCallback = Callable[[CreateProgress], None]


@dataclass
class CreateResult:
    """What ``create_model`` did: the blobs by file name, which were uploaded, every status Ollama reported."""

    name: str
    host: str
    files: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    uploaded: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)


@contextlib.contextmanager
def rich_progress(console: Console | None = None) -> Iterator[ProgressCallback]:
    """A ``progress`` callback for ``create_model`` that shows a rich bar (bytes, rate, time left) while a file is
    hashed or uploaded and prints each of Ollama's status lines once."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, Any] = {}
        printed: list[str] = []

        def update(progress: CreateProgress) -> None:
            if progress.total:
                name = progress.file or progress.digest or progress.status
                if name not in tasks:
                    tasks[name] = bar.add_task(progress.status, total=progress.total)
                bar.update(tasks[name], description=progress.status, completed=progress.completed or 0)
            elif not printed or printed[-1] != progress.status:
                printed.append(progress.status)
                bar.console.print(progress.status)

        yield update


def file_digest(path: str | Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """``sha256:<hex>`` of a file, the address Ollama stores blobs under; ``on_bytes`` hears the bytes hashed so
    far every 64 MiB and at the end."""
    digest, done = hashlib.sha256(), 0
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
            done += len(chunk)
            if on_bytes is not None and done % (64 * _HASH_CHUNK) == 0:
                on_bytes(done)
    if on_bytes is not None:
        on_bytes(done)
    return f"sha256:{digest.hexdigest()}"


def _log_progress(progress: CreateProgress) -> None:
    if progress.total:
        log.info("%s (%d/%d bytes)", progress.status, progress.completed or 0, progress.total)
    else:
        log.info("%s", progress.status)


def upload_blob(
    path: str | Path,
    host: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float | None = None,
    client: ollama.Client | None = None,
) -> tuple[str, bool]:
    """Make sure Ollama holds ``path`` as a blob: ``(digest, uploaded)``, uploading only when
    ``HEAD /api/blobs/<digest>`` says it is missing."""
    base, report = resolve_host(host), progress or _log_progress
    file = Path(path)
    size = file.stat().st_size
    report(CreateProgress(f"hashing {file.name}", completed=0, total=size, file=file.name))
    digest = file_digest(
        file, lambda done: report(CreateProgress(f"hashing {file.name}", completed=done, total=size, file=file.name))
    )
    status, body = _get(base, f"/api/blobs/{digest}", timeout or 30.0, method="HEAD")
    if status == 200:
        report(
            CreateProgress(f"{file.name} already in Ollama", digest=digest, completed=size, total=size, file=file.name)
        )
        return digest, False
    if status != 404:
        raise OllamaAPIError(base, f"HEAD /api/blobs/{digest}", _error_text(body) or "unexpected answer", status)
    report(CreateProgress(f"uploading {file.name}", digest=digest, completed=0, total=size, file=file.name))
    client = client or ollama_client(base, timeout)
    try:
        sent = client.create_blob(file)
    except client_errors() as exc:
        raise translate_error(exc, base, f"upload {file.name}") from exc
    if sent != digest:
        raise OllamaError(f"{file} changed while it was uploaded (digest {digest}, then {sent}); upload it again")
    report(CreateProgress(f"uploaded {file.name}", digest=digest, completed=size, total=size, file=file.name))
    return digest, True


def create_model(
    name: str,
    *,
    host: str | None = None,
    gguf_path: str | Path | None = None,
    base_name: str | None = None,
    adapter_path: str | Path | None = None,
    template: str | None = None,
    system: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    license: str | Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    timeout: float | None = None,
) -> CreateResult:
    """Register ``name`` with Ollama: from ``gguf_path`` (a merged GGUF, uploaded as a blob) or from the Ollama
    model ``base_name``, optionally with the GGUF LoRA ``adapter_path``; with the TEMPLATE, SYSTEM, PARAMETERs
    and LICENSE given. ``progress`` receives every status (default: logged). Raises ``ModelNameError`` before any
    request, ``OllamaUnreachable`` when Ollama cannot be reached, ``OllamaAPIError`` for an error it answers
    (``OllamaAdaptersUnsupported`` when it refuses adapters)."""
    validate_model_name(name)
    if (gguf_path is None) == (base_name is None):
        raise OllamaError("create_model needs exactly one of gguf_path (a GGUF file) or base_name (an Ollama model)")
    if base_name is not None:
        validate_model_name(base_name)
    for label, value in (("GGUF", gguf_path), ("adapter", adapter_path)):
        if value is not None:
            file = Path(value)
            if not file.is_file():
                raise OllamaError(f"{label} file not found: {file}")
            if file.suffix.lower() not in (".gguf", ".bin"):
                raise OllamaError(f"{file}: Ollama takes GGUF files (.gguf) for FROM and ADAPTER")
    params = dict(parameters or {})
    for key, value in params.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            validate_parameter(key, item)
    base, report = resolve_host(host), progress or _log_progress
    client = ollama_client(base, timeout)
    result = CreateResult(name=name, host=base)
    if gguf_path is not None:
        digest, uploaded = upload_blob(gguf_path, base, report, timeout, client)
        result.files[Path(gguf_path).name] = digest
        if uploaded:
            result.uploaded.append(Path(gguf_path).name)
    if adapter_path is not None:
        digest, uploaded = upload_blob(adapter_path, base, report, timeout, client)
        result.adapters[Path(adapter_path).name] = digest
        if uploaded:
            result.uploaded.append(Path(adapter_path).name)
    licenses = [license] if isinstance(license, str) else list(license or [])
    try:
        stream = client.create(
            model=name,
            from_=base_name,
            files=result.files or None,
            adapters=result.adapters or None,
            template=template,
            system=system,
            parameters=params or None,
            license=licenses or None,
            stream=True,
        )
        for part in stream:
            update = CreateProgress(str(part.status or ""), part.digest, part.completed, part.total)
            result.statuses.append(update.status)
            report(update)
    except client_errors() as exc:
        raise translate_error(exc, base, f"create {name}") from exc
    if not result.statuses or result.statuses[-1] != "success":
        last = result.statuses[-1] if result.statuses else "nothing"
        raise OllamaError(f"Ollama at {base} ended create {name} without success (last status: {last})")
    return result


def create_from_modelfile(
    name: str,
    spec: ModelfileSpec,
    modelfile_dir: str | Path,
    host: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float | None = None,
) -> CreateResult:
    """``create_model`` from a Modelfile spec, the way ``ollama create -f`` reads one: FROM (and ADAPTER) paths
    are relative to the Modelfile's folder, and a FROM that is not a file there is a model name."""
    folder = Path(modelfile_dir)
    from_path = (folder / spec.from_).resolve() if not Path(spec.from_).is_absolute() else Path(spec.from_)
    adapter = None
    if spec.adapter:
        adapter = Path(spec.adapter) if Path(spec.adapter).is_absolute() else (folder / spec.adapter).resolve()
    return create_model(
        name,
        host=host,
        gguf_path=from_path if from_path.is_file() else None,
        base_name=None if from_path.is_file() else spec.from_,
        adapter_path=adapter,
        template=spec.template,
        system=spec.system or None,
        parameters=spec.parameters(),
        license=spec.license,
        progress=progress,
        timeout=timeout,
    )
