"""Install llama-cpp-python into a virtual environment, built from its pinned source with the AMX tile fix.

llama.cpp's AMX kernels (``ggml/src/ggml-cpu/amx/mmq.cpp``) fill a 64-byte tile configuration on the stack and load
it with ``_tile_loadconfig``. GCC 12 (Debian 12's compiler) does not treat that instruction as reading all 64 bytes:
it keeps only the first 32-byte store and drops the writes of the tile shapes, so every thread loads a configuration
with garbage shapes and the first AMX tile instruction faults (SIGSEGV, a general-protection fault in
``libggml-cpu``). That kills any process that runs a quantised GGUF (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K, IQ4_XS
weights go to the AMX buffer type) on a CPU with AMX, at the first prompt of two or more tokens. The fix is a
compiler barrier that makes the stores visible before the load; on CPUs without AMX the file is not compiled in.

The built wheel is kept in ``$XDG_CACHE_HOME/equitune/wheels`` (default ``~/.cache``) under a key made of the
version, the fix, the compiler, the CPU's flags and ``CMAKE_ARGS`` (llama.cpp builds for the CPU it is built on), so
the 5-minute build happens once per machine; a marker file in the environment records which build it has.

Usage: python scripts/llama_cpp_wheel.py VENV_PYTHON
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
AMX_SOURCE = "vendor/llama.cpp/ggml/src/ggml-cpu/amx/mmq.cpp"
LOAD = "    _tile_loadconfig(&tc);\n"
FIXED = (
    "    // equitune: GCC 12 does not see ldtilecfg read all 64 bytes of tc and drops the stores above\n"
    '    __asm__ __volatile__("" : : "r"(&tc) : "memory");\n' + LOAD
)
MARKER = "equitune-llama-cpp.json"


def fix_tile_config(source: str) -> str:
    """``mmq.cpp`` with the compiler barrier before its one ``_tile_loadconfig``; raises if the file changed."""
    if FIXED in source:
        return source
    if source.count(LOAD) != 1:
        raise SystemExit(f"llama_cpp_wheel: {AMX_SOURCE} does not have exactly one '{LOAD.strip()}'")
    return source.replace(LOAD, FIXED)


def _compiler() -> str:
    cc = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or "c++"
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    except OSError:
        return "no compiler"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return platform.processor()


def build_key() -> str:
    parts = [VERSION, SDIST_SHA256, FIXED, _compiler(), _cpu_flags(), os.environ.get("CMAKE_ARGS", ""), sys.platform]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _cache_dir(key: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return base / "equitune" / "wheels" / f"llama-cpp-python-{VERSION}-{key}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _installed_library_sha256(python: str) -> str | None:
    """sha256 of the environment's ``llama_cpp/lib/libggml-cpu.so`` (None when llama_cpp is not installed): tells
    whether the installed build is still the one this script put there."""
    find = "import importlib.util, os; s = importlib.util.find_spec('llama_cpp'); print(os.path.dirname(s.origin))"
    found = subprocess.run([python, "-c", find], capture_output=True, text=True, check=False)
    library = Path(found.stdout.strip()) / "lib" / "libggml-cpu.so"
    return _sha256(library) if found.returncode == 0 and library.is_file() else None


def build_wheel(python: str, target: Path) -> Path:
    """Download the pinned sdist, check its hash, apply the fix, build the wheel into ``target``."""
    with tempfile.TemporaryDirectory(prefix="equitune-llama-cpp-") as tmp:
        work = Path(tmp)
        pip = [python, "-m", "pip"]
        subprocess.run(
            [*pip, "download", "--quiet", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={VERSION}"]
            + ["-d", str(work)],
            check=True,
        )
        (sdist,) = work.glob("llama_cpp_python-*.tar.gz")
        if _sha256(sdist) != SDIST_SHA256:
            raise SystemExit(f"llama_cpp_wheel: {sdist.name} does not have the pinned sha256 {SDIST_SHA256}")
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data") if hasattr(tarfile, "data_filter") else archive.extractall(work)
        source_dir = work / f"llama_cpp_python-{VERSION}"
        amx = source_dir / AMX_SOURCE
        amx.write_text(fix_tile_config(amx.read_text()))
        print(f"building llama-cpp-python {VERSION} with the AMX tile fix (about 5 minutes on 2 cores)", flush=True)
        subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(work / "wheel"), str(source_dir)], check=True)
        (wheel,) = (work / "wheel").glob("llama_cpp_python-*.whl")
        target.mkdir(parents=True, exist_ok=True)
        partial = target / (wheel.name + ".partial")
        shutil.copyfile(wheel, partial)
        os.replace(partial, target / wheel.name)
        return target / wheel.name


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    python = argv[0]
    prefix = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True)
    venv = Path(prefix.stdout.strip())
    key = build_key()
    marker = venv / MARKER
    try:
        recorded = json.loads(marker.read_text())
        installed = recorded.get("key")
    except (OSError, ValueError, AttributeError):
        recorded, installed = {}, None
    if installed == key and _installed_library_sha256(python) == recorded.get("library_sha256"):
        return 0
    cache = _cache_dir(key)
    wheels = sorted(cache.glob("llama_cpp_python-*.whl"))
    wheel = wheels[0] if wheels else build_wheel(python, cache)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(wheel)], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], check=True)  # its dependencies
    record = {
        "key": key,
        "version": VERSION,
        "wheel": str(wheel),
        "sha256": _sha256(wheel),
        "library_sha256": _installed_library_sha256(python),
        "fix": "amx-tile-config",
    }
    partial = marker.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, marker)
    print(f"llama-cpp-python {VERSION} (AMX tile fix) installed from {wheel}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
