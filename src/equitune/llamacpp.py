"""Loading GGUF models into llama.cpp safely on every CPU.

llama.cpp moves the weights of quantised GGUFs into *extra buffer types* built for the CPU: the AMX layout on Intel
CPUs with AMX-INT8 (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K, IQ4_XS weights), repacked layouts elsewhere (Q4_0, Q4_K,
IQ4_NL, ...). Those kernels are native code that differs per CPU, and a fault in them kills the whole process: a
llama-cpp-python built by GCC 12 crashes in its AMX kernels at the first prompt of two or more tokens (the compiler
drops the stores that fill the AMX tile configuration; ``scripts/llama_cpp_wheel.py`` builds the fixed one).

So equitune never loads a quantised GGUF blind: the first time a llama.cpp build meets a set of weight types on a CPU,
it loads the model in a subprocess (``equitune.llamacpp_probe``), runs a 64-token prompt and a few decoding steps, and
remembers the verdict on disk (``$XDG_CACHE_HOME/equitune/llama_cpp/probes.json``), keyed by the library's sha256,
the CPU's flags and the weight types. When the probe dies, every load of such a model goes without extra buffer types
(``use_extra_bufts = False``: the plain CPU kernels, the same numbers, slower prompt processing) and one warning says
so. F16/F32 models have no weights an extra buffer type takes and load as they are. ``EQUITUNE_LLAMA_EXTRA_BUFFERS``
set to ``on`` or ``off`` skips the probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equitune.errors import EquituneError
from equitune.gguf_header import FLOAT_TYPES, read_gguf_tensor_info

log = logging.getLogger(__name__)

EXTRA_BUFFERS_ENV = "EQUITUNE_LLAMA_EXTRA_BUFFERS"
PROBE_TIMEOUT_S = 180.0
CPU_FEATURES = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The /proc/cpuinfo flags that decide which llama.cpp kernels run."""

GGML_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K",
    13: "Q5_K", 14: "Q6_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
    22: "IQ2_S", 23: "IQ4_XS", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}  # fmt: skip


class LlamaCppLoadError(EquituneError):
    """llama.cpp cannot load a model safely on this machine; the message says why and what to do."""


# ----------------------------------------------------------------------------------------------- the machine


def default_threads() -> int:
    """The CPUs this process may run on (llama-cpp-python's own default is half the machine's cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (or the text given); empty where there is none (macOS)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what ``platform`` says."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


def parse_system_info(text: str) -> dict[str, str]:
    """``llama_print_system_info()`` as a mapping: ``CPU : SSE3 = 1 | AMX_INT8 = 1 | REPACK = 1 |`` gives
    ``{"SSE3": "1", "AMX_INT8": "1", "REPACK": "1"}`` (later backends' entries included)."""
    found: dict[str, str] = {}
    for part in text.replace("\n", "|").split("|"):
        if " : " in part:  # "CPU : SSE3 = 1" starts a backend's list
            part = part.split(" : ", 1)[1]
        if "=" in part:
            key, value = part.split("=", 1)
            if key.strip():
                found[key.strip()] = value.strip()
    return found


def system_info() -> dict[str, str]:
    """The features llama.cpp was built with and sees on this CPU (``AMX_INT8``, ``AVX512_VNNI``, ``REPACK``...)."""
    bindings = _bindings()
    return parse_system_info(bindings.llama_print_system_info().decode("utf-8", errors="replace"))


def _bindings() -> Any:
    try:
        import llama_cpp.llama_cpp as bindings
    except ImportError as exc:
        raise LlamaCppLoadError(
            f"llama-cpp-python is not installed ({exc}); install it with: pip install 'equitune[serve]'"
        ) from None
    return bindings


_FINGERPRINT: dict[str, str] = {}


def library_fingerprint() -> str:
    """sha256 of llama-cpp-python's native libraries: two builds of the same version for two CPUs differ."""
    import llama_cpp

    folder = Path(llama_cpp.__file__).parent / "lib"
    if str(folder) in _FINGERPRINT:
        return _FINGERPRINT[str(folder)]
    digest = hashlib.sha256(str(getattr(llama_cpp, "__version__", "?")).encode())
    for path in sorted({p.resolve() for p in folder.glob("*.so*")} | {p.resolve() for p in folder.glob("*.dylib")}):
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    _FINGERPRINT[str(folder)] = digest.hexdigest()
    return _FINGERPRINT[str(folder)]


def weight_types(model_path: str | os.PathLike[str]) -> frozenset[int]:
    """The ggml type ids of a GGUF's tensors, from its header."""
    _metadata, tensors = read_gguf_tensor_info(Path(model_path))
    return frozenset(info.ggml_type for info in tensors.values())


def type_names(types: frozenset[int]) -> str:
    return ", ".join(sorted(GGML_TYPE_NAMES.get(t, f"type {t}") for t in types))


# ------------------------------------------------------------------------------------------------ the probe


@dataclass(frozen=True)
class ProbeResult:
    """What a probe subprocess did: loaded the model and generated (``ok``), or how it ended."""

    ok: bool
    extra_buffers: bool
    returncode: int
    seconds: float
    signal: str | None = None
    """The signal that ended the process (``SIGSEGV``), when one did."""
    detail: str = ""
    report: Mapping[str, Any] = field(default_factory=dict)
    """The probe's own JSON report when it finished (rates, buffer sizes, llama.cpp's system info)."""

    def describe(self) -> str:
        if self.ok:
            prompt = self.report.get("prompt_tokens_per_s")
            decode = self.report.get("decode_tokens_per_s")
            rates = f": prompt {prompt:,.0f} tokens/s, decoding {decode:,.0f} tokens/s" if prompt and decode else ""
            return f"loads and generates{rates}"
        if self.signal:
            return f"crashed with {self.signal} ({self.detail})" if self.detail else f"crashed with {self.signal}"
        return f"failed (exit {self.returncode}): {self.detail}"


def run_probe(
    model_path: str | os.PathLike[str],
    *,
    extra_buffers: bool,
    timeout: float = PROBE_TIMEOUT_S,
    n_threads: int | None = None,
    command: list[str] | None = None,
) -> ProbeResult:
    """Load ``model_path`` in a subprocess with or without extra buffer types and generate; a crash in native code
    ends only that process, and its signal is reported. ``command`` replaces the probe's command line (tests)."""
    argv = command or [
        sys.executable,
        "-m",
        "equitune.llamacpp_probe",
        str(model_path),
        "--extra-buffers",
        "on" if extra_buffers else "off",
    ]
    if n_threads and command is None:
        argv += ["--threads", str(n_threads)]
    env = dict(os.environ)
    env.pop(EXTRA_BUFFERS_ENV, None)
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return ProbeResult(False, extra_buffers, -1, time.perf_counter() - started, None, f"no answer in {timeout:g} s")
    seconds = time.perf_counter() - started
    report: dict[str, Any] = {}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                report = json.loads(line)
            break
    code = done.returncode
    if code < 0:
        try:
            name: str | None = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return ProbeResult(False, extra_buffers, code, seconds, name, _last_line(done.stderr), report)
    if code != 0 or not report.get("ok"):
        return ProbeResult(False, extra_buffers, code, seconds, None, _last_line(done.stderr) or "no report", report)
    return ProbeResult(True, extra_buffers, 0, seconds, None, "", report)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# --------------------------------------------------------------------------------------------- the verdicts


def probe_cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "equitune" / "llama_cpp" / "probes.json"


@dataclass(frozen=True)
class LoadPlan:
    """How a model is loaded: with or without extra buffer types, and why."""

    extra_buffers: bool
    reason: str
    probe: ProbeResult | None = None


_VERDICTS: dict[str, LoadPlan] = {}
_WARNED: set[str] = set()
_LOCK = threading.Lock()


def verdict_key(fingerprint: str, flags: frozenset[str], types: frozenset[int]) -> str:
    quantised = sorted(types - FLOAT_TYPES)
    text = "\n".join([fingerprint, " ".join(sorted(flags)), ",".join(map(str, quantised))])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load_plan(model_path: str | os.PathLike[str], *, n_threads: int | None = None) -> LoadPlan:
    """Whether ``model_path`` may load with extra buffer types here: ``EQUITUNE_LLAMA_EXTRA_BUFFERS`` when set, yes
    for float models, else the probe's verdict for this library, CPU and set of weight types (probed once, then read
    from the cache)."""
    setting = os.environ.get(EXTRA_BUFFERS_ENV, "auto").strip().lower()
    if setting in ("on", "1", "true", "yes"):
        return LoadPlan(True, f"{EXTRA_BUFFERS_ENV}={setting}")
    if setting in ("off", "0", "false", "no"):
        return LoadPlan(False, f"{EXTRA_BUFFERS_ENV}={setting}")
    if setting != "auto":
        raise LlamaCppLoadError(f"{EXTRA_BUFFERS_ENV} must be auto, on or off, not '{setting}'")
    try:
        types = weight_types(model_path)
    except (OSError, EquituneError, ValueError, OverflowError, MemoryError) as exc:  # llama.cpp says what is wrong
        return LoadPlan(True, f"weight types unreadable ({exc})")
    quantised = types - FLOAT_TYPES
    if not quantised:
        return LoadPlan(True, "float weights only: no extra buffer type applies")
    key = verdict_key(library_fingerprint(), cpu_flags(), types)
    with _LOCK:
        if key in _VERDICTS:
            return _VERDICTS[key]
        plan = _cached_plan(key)
        if plan is None:
            probe = run_probe(model_path, extra_buffers=True, n_threads=n_threads)
            if probe.ok:
                plan = LoadPlan(True, f"probe passed with {type_names(quantised)} weights", probe)
            else:
                plan = LoadPlan(False, f"probe with {type_names(quantised)} weights {probe.describe()}", probe)
            _store_plan(key, plan, model_path)
        _VERDICTS[key] = plan
    return plan


def _cached_plan(key: str) -> LoadPlan | None:
    try:
        entry = json.loads(probe_cache_file().read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("extra_buffers"), bool):
        return None
    return LoadPlan(entry["extra_buffers"], str(entry.get("reason", "")) + " (cached)")


def _store_plan(key: str, plan: LoadPlan, model_path: str | os.PathLike[str]) -> None:
    from equitune.io import atomic_write_text

    path = probe_cache_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[key] = {
        "extra_buffers": plan.extra_buffers,
        "reason": plan.reason,
        "model": str(model_path),
        "cpu": cpu_model(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError as exc:  # a read-only home: the verdict still holds for this process
        log.debug("could not record the llama.cpp probe verdict in %s: %s", path, exc)


def forget_verdicts() -> None:
    """Drop this process's remembered verdicts (the on-disk cache stays)."""
    with _LOCK:
        _VERDICTS.clear()
        _WARNED.clear()


# ------------------------------------------------------------------------------------------------- loading


_PARAMS_LOCK = threading.Lock()


def _require_extra_bufts_flag(bindings: Any) -> None:
    """Raise unless this llama-cpp-python's model parameters have ``use_extra_bufts`` (added in 0.3.16)."""
    if not any(name == "use_extra_bufts" for name, *_ in getattr(bindings.llama_model_params, "_fields_", [])):
        raise LlamaCppLoadError(
            "This llama-cpp-python has no use_extra_bufts model parameter, so its extra buffer types cannot be turned "
            "off; install llama-cpp-python >= 0.3.16 (./scripts/setup_env.sh serve builds a checked one)"
        )


def _without_extra_buffers(default_params: Callable[[], Any]) -> Callable[[], Any]:
    def params() -> Any:
        built = default_params()
        built.use_extra_bufts = False
        return built

    return params


@contextlib.contextmanager
def model_params(extra_buffers: bool) -> Iterator[None]:
    """While inside, ``llama_cpp.Llama`` builds its model parameters with ``use_extra_bufts`` set as given
    (llama-cpp-python has no keyword for it: its default-parameters function is wrapped for the duration)."""
    bindings = _bindings()
    if extra_buffers:
        yield
        return
    _require_extra_bufts_flag(bindings)
    with _PARAMS_LOCK:
        original = bindings.llama_model_default_params
        bindings.llama_model_default_params = _without_extra_buffers(original)
        try:
            yield
        finally:
            bindings.llama_model_default_params = original


def disable_extra_buffers_for_process() -> None:
    """Every model this process loads goes without extra buffer types (the ``equitune serve`` subprocess)."""
    bindings = _bindings()
    _require_extra_bufts_flag(bindings)
    bindings.llama_model_default_params = _without_extra_buffers(bindings.llama_model_default_params)


def open_llama(model_path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``llama_cpp.Llama(model_path=..., **kwargs)``, loaded the way ``load_plan`` says is safe on this machine;
    says once per verdict when extra buffer types are turned off."""
    import llama_cpp

    plan = load_plan(model_path, n_threads=kwargs.get("n_threads"))
    if not plan.extra_buffers and plan.reason not in _WARNED:
        _WARNED.add(plan.reason)
        fix = "" if plan.reason.startswith(EXTRA_BUFFERS_ENV) else " (scripts/setup_env.sh serve builds the fixed one)"
        log.warning(
            "llama.cpp loads %s without extra buffer types (weight repacking, AMX): %s; prompts run slower%s.",
            Path(model_path).name,
            plan.reason,
            fix,
        )
    with model_params(plan.extra_buffers):
        llm = llama_cpp.Llama(model_path=str(model_path), **kwargs)
    if not plan.extra_buffers and getattr(llm.model_params, "use_extra_bufts", False):
        llm.close()
        raise LlamaCppLoadError(f"llama.cpp did not take use_extra_bufts = False for {model_path}")
    return llm
