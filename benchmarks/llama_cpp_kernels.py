"""Prompt and decoding speed of the installed llama.cpp on this CPU, per GGUF type, with and without its extra buffer
types (the AMX layout on CPUs with AMX-INT8, repacked layouts elsewhere), each load in a subprocess of its own
(``equitune.llamacpp_probe``), so that a build whose kernels crash on this CPU shows the crash instead of ending the
benchmark.

The files are the bundled SmolLM2-135M-Instruct Q4_1 GGUF and, made from it once into ``--work``, its f16
dequantisation and the q8_0, q4_K_M and q4_0 quantisations of that f16 file.

Usage: ``python benchmarks/llama_cpp_kernels.py [--prompt-tokens 512] [--tokens 64] [--repeats 2] [--json F]``.
Prints a table; exits 1 when a load with extra buffer types crashes while equitune's loader would still use them.
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from equitune.export.gguf import quantize_gguf
from equitune.io import atomic_write_json
from equitune.llamacpp import CPU_FEATURES, cpu_flags, cpu_model, forget_verdicts, load_plan, run_probe, system_info
from equitune.train.base_model import embedded_gguf_path

DERIVED = ("q8_0", "q4_K_M", "q4_0")


def _dequantise(src: Path, dst: Path) -> Path:
    """f16 from the Q4_1 file (llama.cpp's quantiser, allowed to requantise)."""
    import llama_cpp

    if dst.is_file():
        return dst
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(llama_cpp.LLAMA_FTYPE_MOSTLY_F16)
    params.allow_requantize = True
    tmp = dst.with_name(dst.name + ".tmp")
    if llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"could not dequantise {src} to f16")
    tmp.replace(dst)
    return dst


def models(work: Path) -> dict[str, Path]:
    bundled = embedded_gguf_path()
    f16 = _dequantise(bundled, work / "smollm2-135m-f16.gguf")
    found = {"q4_1 (bundled)": bundled, "f16": f16}
    for qtype in DERIVED:
        target = work / f"smollm2-135m-{qtype}.gguf"
        found[qtype] = target if target.is_file() else quantize_gguf(f16, target, qtype)
    return found


def measure(prompt_tokens: int, tokens: int, repeats: int, work: Path) -> dict[str, Any]:
    rows = []
    for name, path in models(work).items():
        row: dict[str, Any] = {"type": name, "file": str(path)}
        for extra in (True, False):
            runs = []
            for _ in range(repeats):
                command = [sys.executable, "-m", "equitune.llamacpp_probe", str(path), "--extra-buffers"]
                command += ["on" if extra else "off", "--tokens", str(tokens), "--prompt-tokens", str(prompt_tokens)]
                runs.append(run_probe(path, extra_buffers=extra, command=command))
            best = max(runs, key=lambda r: r.report.get("prompt_tokens_per_s", 0.0) if r.ok else -1.0)
            row["extra_on" if extra else "extra_off"] = {
                "ok": best.ok,
                "signal": best.signal,
                "prompt_tokens_per_s": max((r.report["prompt_tokens_per_s"] for r in runs if r.ok), default=None),
                "decode_tokens_per_s": max((r.report["decode_tokens_per_s"] for r in runs if r.ok), default=None),
                "outcome": best.describe(),
            }
        forget_verdicts()
        plan = load_plan(path)
        row["equitune_loads_with_extra_buffers"] = plan.extra_buffers
        row["plan"] = plan.reason
        rows.append(row)
    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cpu_features": [f for f in CPU_FEATURES if f in flags],
        "llama_cpp_features": {k: v for k, v in system_info().items() if v == "1"},
        "python": platform.python_version(),
        "prompt_tokens": prompt_tokens,
        "decode_tokens": tokens,
        "repeats": repeats,
        "rows": rows,
    }


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "equitune-llama-kernels")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    results = measure(args.prompt_tokens, args.tokens, args.repeats, args.work)
    console = Console(width=150)
    console.print(
        f"{results['cpu']} ({' '.join(results['cpu_features'])}); llama.cpp: {' '.join(results['llama_cpp_features'])}"
    )
    table = Table(
        title=f"llama.cpp tokens/s: {args.prompt_tokens}-token prompt, {args.tokens} decoded (best of {args.repeats})"
    )
    for column in ("type", "extra buffers: prompt", "decode", "without: prompt", "decode", "equitune loads"):
        table.add_column(column, justify="left" if column in ("type", "equitune loads") else "right")
    bad = False
    for row in results["rows"]:
        on, off = row["extra_on"], row["extra_off"]
        use = "with extra buffers" if row["equitune_loads_with_extra_buffers"] else "without (plain kernels)"
        bad |= not on["ok"] and row["equitune_loads_with_extra_buffers"]
        first = _rate(on["prompt_tokens_per_s"]) if on["ok"] else f"crash {on['signal'] or ''}".strip()
        table.add_row(
            row["type"],
            first,
            _rate(on["decode_tokens_per_s"]),
            _rate(off["prompt_tokens_per_s"]),
            _rate(off["decode_tokens_per_s"]),
            use,
        )
    console.print(table)
    if args.json:
        atomic_write_json(args.json, results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
